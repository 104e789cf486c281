"""Pipelines: LipSyncPipeline (generation) and the generator interface it talks to."""
