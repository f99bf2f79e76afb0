"""The arXiv category taxonomy: which raw labels are arXiv categories, and what they are called.

The `terms` of the Kaggle "arXiv Paper Abstracts" data mix arXiv category codes (`cs.CV`,
`hep-th`) with ACM classes (`I.2.7`), MSC codes (`68T50`, `14J60 (Primary)`) and junk (`na`);
`is_arxiv_category` keeps the first kind, and `category_name` labels them for the API.

Names follow arXiv's own taxonomy (arxiv.org/category_taxonomy, generated from
`arxiv/taxonomy/definitions.py` in github.com/arXiv/arxiv-base). Aliases that still appear on
papers are listed under both codes: cs.IT = math.IT, math.NA = cs.NA, math-ph = math.MP,
eess.SY = cs.SY, econ.GN = q-fin.EC, math.ST = stat.TH. So are the bare legacy archives
(`astro-ph`, `cond-mat`, `q-bio`) and the pre-2000 archives later folded into categories
(`cmp-lg` into cs.CL, `chao-dyn` into nlin.CD, `alg-geom` into math.AG, ...).

`canonical` folds both kinds into one code before training, since an alias pair always
co-occurs (two labels for one decision double-count it) and a legacy archive is its successor
under an older name: `ALIASES` and `LEGACY` say which code wins, as arXiv's own taxonomy does.
"""

from __future__ import annotations

import re
import unicodedata

CATEGORY_NAMES: dict[str, str] = {
    # Computer Science
    "cs.AI": "Artificial Intelligence",
    "cs.AR": "Hardware Architecture",
    "cs.CC": "Computational Complexity",
    "cs.CE": "Computational Engineering, Finance, and Science",
    "cs.CG": "Computational Geometry",
    "cs.CL": "Computation and Language",
    "cs.CR": "Cryptography and Security",
    "cs.CV": "Computer Vision and Pattern Recognition",
    "cs.CY": "Computers and Society",
    "cs.DB": "Databases",
    "cs.DC": "Distributed, Parallel, and Cluster Computing",
    "cs.DL": "Digital Libraries",
    "cs.DM": "Discrete Mathematics",
    "cs.DS": "Data Structures and Algorithms",
    "cs.ET": "Emerging Technologies",
    "cs.FL": "Formal Languages and Automata Theory",
    "cs.GL": "General Literature",
    "cs.GR": "Graphics",
    "cs.GT": "Computer Science and Game Theory",
    "cs.HC": "Human-Computer Interaction",
    "cs.IR": "Information Retrieval",
    "cs.IT": "Information Theory",
    "cs.LG": "Machine Learning",
    "cs.LO": "Logic in Computer Science",
    "cs.MA": "Multiagent Systems",
    "cs.MM": "Multimedia",
    "cs.MS": "Mathematical Software",
    "cs.NA": "Numerical Analysis",
    "cs.NE": "Neural and Evolutionary Computing",
    "cs.NI": "Networking and Internet Architecture",
    "cs.OH": "Other Computer Science",
    "cs.OS": "Operating Systems",
    "cs.PF": "Performance",
    "cs.PL": "Programming Languages",
    "cs.RO": "Robotics",
    "cs.SC": "Symbolic Computation",
    "cs.SD": "Sound",
    "cs.SE": "Software Engineering",
    "cs.SI": "Social and Information Networks",
    "cs.SY": "Systems and Control",
    # Economics
    "econ.EM": "Econometrics",
    "econ.GN": "General Economics",
    "econ.TH": "Theoretical Economics",
    # Electrical Engineering and Systems Science
    "eess.AS": "Audio and Speech Processing",
    "eess.IV": "Image and Video Processing",
    "eess.SP": "Signal Processing",
    "eess.SY": "Systems and Control",
    # Mathematics
    "math.AC": "Commutative Algebra",
    "math.AG": "Algebraic Geometry",
    "math.AP": "Analysis of PDEs",
    "math.AT": "Algebraic Topology",
    "math.CA": "Classical Analysis and ODEs",
    "math.CO": "Combinatorics",
    "math.CT": "Category Theory",
    "math.CV": "Complex Variables",
    "math.DG": "Differential Geometry",
    "math.DS": "Dynamical Systems",
    "math.FA": "Functional Analysis",
    "math.GM": "General Mathematics",
    "math.GN": "General Topology",
    "math.GR": "Group Theory",
    "math.GT": "Geometric Topology",
    "math.HO": "History and Overview",
    "math.IT": "Information Theory",
    "math.KT": "K-Theory and Homology",
    "math.LO": "Logic",
    "math.MG": "Metric Geometry",
    "math.MP": "Mathematical Physics",
    "math.NA": "Numerical Analysis",
    "math.NT": "Number Theory",
    "math.OA": "Operator Algebras",
    "math.OC": "Optimization and Control",
    "math.PR": "Probability",
    "math.QA": "Quantum Algebra",
    "math.RA": "Rings and Algebras",
    "math.RT": "Representation Theory",
    "math.SG": "Symplectic Geometry",
    "math.SP": "Spectral Theory",
    "math.ST": "Statistics Theory",
    # Physics: Astrophysics
    "astro-ph": "Astrophysics",
    "astro-ph.CO": "Cosmology and Nongalactic Astrophysics",
    "astro-ph.EP": "Earth and Planetary Astrophysics",
    "astro-ph.GA": "Astrophysics of Galaxies",
    "astro-ph.HE": "High Energy Astrophysical Phenomena",
    "astro-ph.IM": "Instrumentation and Methods for Astrophysics",
    "astro-ph.SR": "Solar and Stellar Astrophysics",
    # Physics: Condensed Matter
    "cond-mat": "Condensed Matter",
    "cond-mat.dis-nn": "Disordered Systems and Neural Networks",
    "cond-mat.mes-hall": "Mesoscale and Nanoscale Physics",
    "cond-mat.mtrl-sci": "Materials Science",
    "cond-mat.other": "Other Condensed Matter",
    "cond-mat.quant-gas": "Quantum Gases",
    "cond-mat.soft": "Soft Condensed Matter",
    "cond-mat.stat-mech": "Statistical Mechanics",
    "cond-mat.str-el": "Strongly Correlated Electrons",
    "cond-mat.supr-con": "Superconductivity",
    # Physics: single-category archives
    "gr-qc": "General Relativity and Quantum Cosmology",
    "hep-ex": "High Energy Physics - Experiment",
    "hep-lat": "High Energy Physics - Lattice",
    "hep-ph": "High Energy Physics - Phenomenology",
    "hep-th": "High Energy Physics - Theory",
    "math-ph": "Mathematical Physics",
    "nucl-ex": "Nuclear Experiment",
    "nucl-th": "Nuclear Theory",
    "quant-ph": "Quantum Physics",
    # Physics: Nonlinear Sciences
    "nlin.AO": "Adaptation and Self-Organizing Systems",
    "nlin.CD": "Chaotic Dynamics",
    "nlin.CG": "Cellular Automata and Lattice Gases",
    "nlin.PS": "Pattern Formation and Solitons",
    "nlin.SI": "Exactly Solvable and Integrable Systems",
    # Physics: Physics
    "physics.acc-ph": "Accelerator Physics",
    "physics.ao-ph": "Atmospheric and Oceanic Physics",
    "physics.app-ph": "Applied Physics",
    "physics.atm-clus": "Atomic and Molecular Clusters",
    "physics.atom-ph": "Atomic Physics",
    "physics.bio-ph": "Biological Physics",
    "physics.chem-ph": "Chemical Physics",
    "physics.class-ph": "Classical Physics",
    "physics.comp-ph": "Computational Physics",
    "physics.data-an": "Data Analysis, Statistics and Probability",
    "physics.ed-ph": "Physics Education",
    "physics.flu-dyn": "Fluid Dynamics",
    "physics.gen-ph": "General Physics",
    "physics.geo-ph": "Geophysics",
    "physics.hist-ph": "History and Philosophy of Physics",
    "physics.ins-det": "Instrumentation and Detectors",
    "physics.med-ph": "Medical Physics",
    "physics.optics": "Optics",
    "physics.plasm-ph": "Plasma Physics",
    "physics.pop-ph": "Popular Physics",
    "physics.soc-ph": "Physics and Society",
    "physics.space-ph": "Space Physics",
    # Quantitative Biology
    "q-bio": "Quantitative Biology",
    "q-bio.BM": "Biomolecules",
    "q-bio.CB": "Cell Behavior",
    "q-bio.GN": "Genomics",
    "q-bio.MN": "Molecular Networks",
    "q-bio.NC": "Neurons and Cognition",
    "q-bio.OT": "Other Quantitative Biology",
    "q-bio.PE": "Populations and Evolution",
    "q-bio.QM": "Quantitative Methods",
    "q-bio.SC": "Subcellular Processes",
    "q-bio.TO": "Tissues and Organs",
    # Quantitative Finance
    "q-fin.CP": "Computational Finance",
    "q-fin.EC": "Economics",
    "q-fin.GN": "General Finance",
    "q-fin.MF": "Mathematical Finance",
    "q-fin.PM": "Portfolio Management",
    "q-fin.PR": "Pricing of Securities",
    "q-fin.RM": "Risk Management",
    "q-fin.ST": "Statistical Finance",
    "q-fin.TR": "Trading and Market Microstructure",
    # Statistics
    "stat.AP": "Applications",
    "stat.CO": "Computation",
    "stat.ME": "Methodology",
    "stat.ML": "Machine Learning",
    "stat.OT": "Other Statistics",
    "stat.TH": "Statistics Theory",
    # Legacy archives (closed by 2000), each later subsumed by the category in the comment
    "acc-phys": "Accelerator Physics",  # physics.acc-ph
    "adap-org": "Adaptation, Noise, and Self-Organizing Systems",  # nlin.AO
    "alg-geom": "Algebraic Geometry",  # math.AG
    "ao-sci": "Atmospheric-Oceanic Sciences",  # physics.ao-ph
    "atom-ph": "Atomic, Molecular and Optical Physics",  # physics.atom-ph
    "bayes-an": "Bayesian Analysis",  # physics.data-an
    "chao-dyn": "Chaotic Dynamics",  # nlin.CD
    "chem-ph": "Chemical Physics",  # physics.chem-ph
    "cmp-lg": "Computation and Language",  # cs.CL
    "comp-gas": "Cellular Automata and Lattice Gases",  # nlin.CG
    "dg-ga": "Differential Geometry",  # math.DG
    "funct-an": "Functional Analysis",  # math.FA
    "mtrl-th": "Materials Theory",  # cond-mat.mtrl-sci
    "patt-sol": "Pattern Formation and Solitons",  # nlin.PS
    "plasm-ph": "Plasma Physics",  # physics.plasm-ph
    "q-alg": "Quantum Algebra and Topology",  # math.QA
    "solv-int": "Exactly Solvable and Integrable Systems",  # nlin.SI
    "supr-con": "Superconductivity",  # cond-mat.supr-con
}

# arXiv's alias pairs, alias -> canonical (arxiv-base `CATEGORY_ALIASES`): a paper cross-listed in
# one is listed in both, so each pair is one label here.
ALIASES: dict[str, str] = {
    "math.MP": "math-ph",
    "stat.TH": "math.ST",
    "math.IT": "cs.IT",
    "q-fin.EC": "econ.GN",
    "cs.SY": "eess.SY",
    "cs.NA": "math.NA",
}

# Archives closed by 2000, each subsumed by one category (arxiv-base `ARCHIVES_SUBSUMED`).
LEGACY: dict[str, str] = {
    "acc-phys": "physics.acc-ph",
    "adap-org": "nlin.AO",
    "alg-geom": "math.AG",
    "ao-sci": "physics.ao-ph",
    "atom-ph": "physics.atom-ph",
    "bayes-an": "physics.data-an",
    "chao-dyn": "nlin.CD",
    "chem-ph": "physics.chem-ph",
    "cmp-lg": "cs.CL",
    "comp-gas": "nlin.CG",
    "dg-ga": "math.DG",
    "funct-an": "math.FA",
    "mtrl-th": "cond-mat.mtrl-sci",
    "patt-sol": "nlin.PS",
    "plasm-ph": "physics.plasm-ph",
    "q-alg": "math.QA",
    "solv-int": "nlin.SI",
    "supr-con": "cond-mat.supr-con",
}

# Within an archive, subject classes are either two capitals (cs.CV, astro-ph.GA) or lower-case
# words joined by hyphens (cond-mat.mtrl-sci, physics.optics); each archive uses one style.
_UPPER_SUBJECT = re.compile(r"[A-Z]{2}")
_LOWER_SUBJECT = re.compile(r"[a-z]+(?:-[a-z]+)?")
_SUBJECT_STYLE: dict[str, re.Pattern[str]] = {
    archive: _UPPER_SUBJECT if _UPPER_SUBJECT.fullmatch(subject) else _LOWER_SUBJECT
    for archive, _, subject in (code.partition(".") for code in CATEGORY_NAMES if "." in code)
}


def is_arxiv_category(code: str) -> bool:
    """Whether `code` is an arXiv category, as opposed to an ACM or MSC class or junk.

    Known codes are accepted, and so are unknown subjects of a known archive written in that
    archive's style (`cs.XX`, not `cs.xx`), since arXiv adds categories. Nothing is stripped
    or case-folded: `cs.CV ` and `CS.CV` are rejected, and so are bare archives such as `cs`.
    """
    if code in CATEGORY_NAMES:
        return True
    archive, _, subject = code.partition(".")
    style = _SUBJECT_STYLE.get(archive)
    return style is not None and style.fullmatch(subject) is not None


# Known codes by their case-folded spelling (no two known codes differ only in case).
_BY_FOLDED_CASE = {code.casefold(): code for code in CATEGORY_NAMES}


def respelled(code: str) -> str | None:
    """The known category that `code` spells with other letter case or with spaces or
    invisible characters inside (`cs.lg`, ` CS.CV `, `cs.LG` + a zero-width space), or None."""
    visible = "".join(ch for ch in code if not ch.isspace() and unicodedata.category(ch) != "Cf")
    return _BY_FOLDED_CASE.get(visible.casefold())


def category_name(code: str) -> str:
    """The official name of a category (`cs.CV` -> "Computer Vision and Pattern Recognition").

    Falls back to the code itself for categories this taxonomy does not know.
    """
    return CATEGORY_NAMES.get(code, code)


def canonical(code: str) -> str | None:
    """The code a known category is trained and served under (aliases and legacy archives
    folded), or None when the taxonomy does not know `code`: nothing is ever invented."""
    if code not in CATEGORY_NAMES:
        return None
    return ALIASES.get(code) or LEGACY.get(code) or code


def archive(code: str) -> str:
    """The archive of a category (`cs.CV` -> `cs`, `hep-th` -> `hep-th`, `math-ph` -> `math-ph`)."""
    return code.partition(".")[0]


def is_cs_or_stat(code: str) -> bool:
    """Whether a category belongs to computer science or statistics (the CS-heavy fields)."""
    return archive(code) in ("cs", "stat")
