"""Benchmarks and reliability figures.

- `python bench/run.py`: the served model's speed, side by side with Keras (results.md/.png).
  `papers` reads the abstracts, `package` builds the Lambda package, `probe` measures the built
  function in an isolated interpreter, `keras_probe` the Keras model, `measure` drives both,
  `report` and `findings` write the results, `machine` describes the host.
- `python bench/alternatives.py`: faster variants for a decision (alternatives.md), using
  `seqlens_graph` (the same weights as a leaner ONNX graph) and `random_model` (other sizes).
- `python bench/reliability.py`: runs `pytest -m reliability` and writes reliability.md from
  what the tests `figures.record`.
- `python bench/training.py`: the training run's time, memory and test quality.
"""
