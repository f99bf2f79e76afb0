"""Benchmarks and reliability figures.

- `python bench/run.py`: the served model's speed, side by side with Keras (results.md/.png).
  `papers` reads the abstracts, `package` builds the Lambda package, `probe` measures the built
  function in an isolated interpreter, `keras_probe` the Keras model, `measure` drives both,
  `report` and `findings` write the results, `machine` describes the host.
- `python bench/reliability.py`: runs `pytest -m reliability` and writes reliability.md from
  what the tests `figures.record`.
- `python bench/training.py`: the training run's time, memory and test quality.
- `python bench/bulk.py`: the local bulk run's papers/s with 1 and 2 workers, and peak memory.
"""
