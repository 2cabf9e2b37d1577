"""vlpref: align vision-language models with preference data — build the data, train, evaluate.

The package follows the data flow: `data` (records, formats, import/export) → `models` (the VLM layer, tiny test
models) → `numerics` (log-probs and, later, losses and metrics). The CLI (`vlpref`) is a thin layer over these.
"""

__version__ = "0.1.0"
