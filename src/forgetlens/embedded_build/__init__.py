"""How the embedded test model is built: corpus, tokenizer, pretraining stages, circuit validation, model card.

Only the CLI (``pretrain-base``) imports this package; loading the shipped model needs none of it.
"""
