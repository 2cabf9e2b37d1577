"""The benchmarks' official scoring rules, one module per benchmark, each with hand-computed tests in
tests/evaluation/scoring: answer parsers, judge-reply parsers, the official summaries, and the judge prompts and
result-file readers that belong to them. No model calls and no run folders: `vlpref.evaluation.<benchmark>` runs the
model and the judge and hands their texts to these functions; `vlpref eval score` hands them files made elsewhere."""
