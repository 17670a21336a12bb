"""Trained pipelines that ship with the package: checksummed fp16 encoder deltas (`deltas`), their model
cards (`cards`), and the builder that turns them into `spacy.load`-able pipelines (`build`)."""
