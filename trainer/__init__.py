"""MAGDi trainer: distil Multi-Agent Interaction Graphs into a small student (arXiv 2402.01620).

Modules, in the order data flows through them: `config` (one typed config), `sources` (Neo4j or
jsonl, deterministic split), `graphs` (a MAG -> a PyG graph), `data` (streaming dataset and
collator), `model` + `losses` (LoRA LM, GCN, scorer; the three loss terms), `train` (the loop),
`checkpoint` (artefacts, exact resume), `card` (the adapter's model card), `evaluate` + `heldout`
(generation, held-out answer scores, metrics; the EvalRun in Neo4j is `magdi.store.eval_runs`), `cli`
(`magdi train` / `magdi eval`), `tiny` (small local models for tests and the demo).
See docs/trainer.md.
"""
