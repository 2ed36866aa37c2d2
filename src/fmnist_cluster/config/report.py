"""Configuration of the ``report`` stage."""

from __future__ import annotations

from pydantic import Field

from fmnist_cluster.config.base import Seed, StrictModel


class ReportConfig(StrictModel):
    """Configuration of ``report``.

    Attributes
    ----------
    title : str
        Heading of the report.
    max_points : int
        Points drawn in each scatter plot and in the explorer (a seeded sample beyond that).
    include_json : bool
        Also list every metrics file of the inputs as a JSON block in the HTML.
    seed : int
        Seed of the scatter sample.
    """

    title: str = "fmnist-cluster report"
    max_points: int = Field(default=10000, gt=10)
    include_json: bool = False
    seed: Seed = 0
