"""The live driver: each projection as a long-lived Quix Streams application."""

from pipelines.live.application import LivePipeline, build_pipeline, run_pipeline
from pipelines.live.stats import PipelineStats

__all__ = ["LivePipeline", "PipelineStats", "build_pipeline", "run_pipeline"]
