"""A grid of training runs from one TOML file (e.g. the paper's Table 3): plan, run (resumably), summarise.

The file has a `[base]` table of `aiayn train` settings (the keys of a `--config` file), a top-level `seeds`
list, and one `[variants.NAME]` table per row: the settings it changes from the base, optionally its own
`seeds`, a `note` and a publication's figures for that row, `paper = { ppl = 5.29, bleu = 24.9 }`. Each
(variant, seed) is one `aiayn train --config FILE --out DIR/runs/NAME-seedS` run; the sweep writes results.csv,
results.md and results.png into DIR. Each row's change from the reference row (top-level `reference_variant`,
default "base") is set beside the publication's change, with a verdict: reproduced, not reproduced or within
noise.
"""


from .plan import (
           NAME,
           OWN_KEYS,
           PAPER_KEYS,
           SWEEP_KEYS,
           Plan,
           Run,
           SweepError,
           Variant,
           plan_sweep,
           toml_string,
           write_toml,
)
from .report import NO_FIGURE, VERDICT_RULE, Row, describe, noise, report, summarise, verdict, write_results
from .run import RESULT_FILE, Launcher, execute, run_state, subprocess_launcher

__all__ = ["NAME", "NO_FIGURE", "OWN_KEYS", "PAPER_KEYS", "RESULT_FILE", "SWEEP_KEYS", "VERDICT_RULE", "Launcher",
           "Plan", "Row", "Run", "SweepError", "Variant", "describe", "execute", "noise", "plan_sweep", "report",
           "run_state", "subprocess_launcher", "summarise", "toml_string", "verdict", "write_results", "write_toml"]
