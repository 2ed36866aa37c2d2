"""Configuration of the ``train-som`` and ``tune`` stages: the map, its training and figures,
and the Optuna search over them."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from fmnist_cluster.config.base import MAX_EPOCHS, MAX_NEURONS, Seed, StrictModel
from fmnist_cluster.device import Device

# The allowed values of the map settings, declared once: the engines check against these too.
Engine = Literal["batch", "minisom"]
ENGINES: tuple[str, ...] = get_args(Engine)
Topology = Literal["rectangular", "hexagonal"]
TOPOLOGIES: tuple[str, ...] = get_args(Topology)
Neighbourhood = Literal["gaussian", "bubble", "triangle", "mexican_hat"]
NEIGHBOURHOODS: tuple[str, ...] = get_args(Neighbourhood)
BATCH_NEIGHBOURHOODS: tuple[str, ...] = tuple(n for n in NEIGHBOURHOODS if n != "mexican_hat")
"""The neighbourhoods of the batch engine (MiniSom has every one of :data:`NEIGHBOURHOODS`)."""
Init = Literal["pca", "random"]
INITS: tuple[str, ...] = get_args(Init)
SigmaSchedule = Literal["exponential", "linear"]
SCHEDULES: tuple[str, ...] = get_args(SigmaSchedule)
LrDecay = Literal["asymptotic_decay", "inverse_decay_to_zero", "linear_decay_to_zero"]
LR_DECAYS: tuple[str, ...] = get_args(LrDecay)
SigmaDecay = Literal["asymptotic_decay", "inverse_decay_to_one", "linear_decay_to_one"]
SIGMA_DECAYS: tuple[str, ...] = get_args(SigmaDecay)
Order = Literal["random", "sequential"]
ORDERS: tuple[str, ...] = get_args(Order)


class SomMapConfig(StrictModel):
    """The map and its training schedule (section ``som``).

    Attributes
    ----------
    engine : {'batch', 'minisom'}
        ``batch``: the toolkit's Kohonen batch map in torch (fast, CPU or CUDA);
        ``minisom``: MiniSom's online updates, one sample at a time.
    rows, cols : int
        Map size (>= 1).
    topology : {'rectangular', 'hexagonal'}
    neighbourhood : {'gaussian', 'bubble', 'triangle', 'mexican_hat'}
        ``mexican_hat`` only with ``engine: minisom``.
    init : {'pca', 'random'}
        Plane of the first two principal components, or random samples of the data.
    sigma : float or None
        Initial neighbourhood width (> 0); None means max(rows, cols) / 2.
    sigma_end : float
        Batch engine: width in the last epoch (> 0, <= sigma).
    epochs : float
        Batch engine: number of epochs (a whole number >= 1). MiniSom: passes over the
        data when ``steps`` is None.
    schedule : {'exponential', 'linear'}
        Batch engine: how sigma shrinks from ``sigma`` to ``sigma_end``.
    learning_rate : float
        MiniSom: initial learning rate (> 0).
    decay_function : {'asymptotic_decay', 'inverse_decay_to_zero', 'linear_decay_to_zero'}
        MiniSom: learning-rate decay.
    sigma_decay_function : {'asymptotic_decay', 'inverse_decay_to_one', 'linear_decay_to_one'}
        MiniSom: sigma decay.
    order : {'random', 'sequential'}
        MiniSom: ``train_random`` (shuffled) or ``train_batch`` (in order) sample order.
    steps : int or None
        MiniSom: number of single-sample updates; None means ``epochs`` passes.
    """

    engine: Engine = "batch"
    rows: int = Field(default=50, ge=1, le=1000)
    cols: int = Field(default=50, ge=1, le=1000)
    topology: Topology = "rectangular"
    neighbourhood: Neighbourhood = "gaussian"
    init: Init = "pca"
    sigma: float | None = Field(default=4.5, gt=0)
    sigma_end: float = Field(default=0.665, gt=0)
    epochs: float = Field(default=13, gt=0, le=MAX_EPOCHS)
    schedule: SigmaSchedule = "exponential"
    learning_rate: float = Field(default=0.5, gt=0)
    decay_function: LrDecay = "asymptotic_decay"
    sigma_decay_function: SigmaDecay = "asymptotic_decay"
    order: Order = "random"
    steps: int | None = Field(default=None, ge=1, le=10**9)

    @model_validator(mode="after")
    def _check_engine_options(self) -> SomMapConfig:
        if self.rows * self.cols > MAX_NEURONS:
            raise ValueError(
                f"a {self.rows}x{self.cols} map has {self.rows * self.cols} neurons; at most {MAX_NEURONS} "
                "(its neuron-to-neuron distances must fit in memory), e.g. 100x100"
            )
        if self.engine == "batch":
            if self.neighbourhood == "mexican_hat":
                valid = ", ".join(BATCH_NEIGHBOURHOODS)
                raise ValueError(f"neighbourhood 'mexican_hat' needs engine 'minisom'; batch valid: {valid}")
            if self.epochs != int(self.epochs):
                raise ValueError(f"epochs must be a whole number for the batch engine, got {self.epochs}")
            if self.sigma is not None and self.sigma < self.sigma_end:
                raise ValueError(f"sigma ({self.sigma}) must be >= sigma_end ({self.sigma_end})")
        return self


class SomTrainConfig(StrictModel):
    """How ``train-som`` feeds and runs the map (section ``train``).

    Attributes
    ----------
    pool : bool
        Train on train + test together (as the original tutorial did); the test accuracy
        is then not held out (metrics.json says so). Default False: train on the training
        split, score on the test split.
    limit : int or None
        Train on at most this many (seeded random) rows.
    chunk_size : int
        Rows per chunk of the winner search (memory ~ chunk_size x neurons x 4 bytes).
    search_dims : int
        Batch engine: 0 searches winners exactly in every epoch; p > 0 searches them among
        the first p principal components in all but the last ``exact_epochs`` epochs (much
        faster on 784 pixels; final metrics are always exact).
    exact_epochs : int
        Batch engine: epochs at the end with the exact search when ``search_dims > 0``.
    exact_candidates : int
        Batch engine: 0 compares every row with every neuron in the exact epochs; c >= 2
        re-ranks the c best neurons of the subspace search by exact distance instead
        (several times faster; final metrics are always exact).
    device : {'auto', 'cpu', 'cuda'}
    early_stop_tol : float or None
        Batch engine: stop when the quantisation error improved by less than this
        fraction for ``patience`` epochs in a row; None trains every epoch.
    patience : int
    """

    pool: bool = False
    limit: int | None = Field(default=None, gt=0)
    chunk_size: int = Field(default=2048, ge=1)
    search_dims: int = Field(default=64, ge=0)
    exact_epochs: int = Field(default=2, ge=0)
    exact_candidates: int = Field(default=8, ge=0)
    device: Device = "auto"
    early_stop_tol: float | None = Field(default=None, ge=0)
    patience: int = Field(default=2, ge=1)


class SomAnalysisConfig(StrictModel):
    """Figures of ``train-som`` (section ``analysis``).

    Attributes
    ----------
    winner_neurons : list of int or None
        Neurons (index row * cols + col) whose samples are shown; None: the 4 most hit.
    n_winner_samples : int
        Samples shown per chosen neuron.
    n_largest_qe : int
        Samples in the largest-quantisation-error montage.
    """

    winner_neurons: list[int] | None = None
    n_winner_samples: int = Field(default=10, ge=1)
    n_largest_qe: int = Field(default=30, ge=1)


class SomConfig(StrictModel):
    """Configuration of ``train-som``: sections ``som``, ``train``, ``analysis`` and a ``seed``."""

    som: SomMapConfig = SomMapConfig()
    train: SomTrainConfig = SomTrainConfig()
    analysis: SomAnalysisConfig = SomAnalysisConfig()
    seed: Seed = 0

    @model_validator(mode="after")
    def _check_winner_neurons(self) -> SomConfig:
        n = self.som.rows * self.som.cols
        bad = [k for k in self.analysis.winner_neurons or [] if not 0 <= k < n]
        if bad:
            raise ValueError(f"analysis.winner_neurons {bad} out of range; neurons of this map are 0..{n - 1}")
        return self


class SearchParam(StrictModel):
    """One dimension of the search space: a range (``low``/``high``, optional ``log`` and
    ``integer``) or a list of ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check_kind(self) -> SearchParam:
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError("give either a non-empty 'choices' list or 'low' and 'high', not both")
        elif self.low is None or self.high is None:
            raise ValueError("a range needs both 'low' and 'high' (or give 'choices')")
        elif self.low > self.high:
            raise ValueError(f"low ({self.low}) > high ({self.high}); swap them")
        elif self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got {self.low}")
        return self


def _default_space() -> dict[str, SearchParam]:
    return {
        "som.sigma": SearchParam(low=1.0, high=10.0, log=True),
        "som.sigma_end": SearchParam(low=0.3, high=3.0, log=True),
        "som.epochs": SearchParam(low=2, high=8, integer=True),
        "som.neighbourhood": SearchParam(choices=["gaussian", "bubble", "triangle"]),
    }


class TuneConfig(StrictModel):
    """Configuration of ``tune``: Optuna TPE over ``train-som`` settings.

    Attributes
    ----------
    base : SomConfig
        The map settings every trial starts from; ``space`` keys replace parts of it.
    space : dict of dotted key -> SearchParam
        Keys are dotted ``train-som`` config keys (``som.sigma``, ``som.rows``, ...).
    n_trials : int
        Finished trials the study should hold (shared by every worker on one storage).
    timeout : float or None
        Stop this worker after that many seconds.
    objective : {'pareto', 'scalar'}
        ``pareto``: minimise held-out QE and TE together (multi-objective TPE, Pareto
        front); ``scalar``: minimise ``qe + te_weight * te`` with median pruning on the
        per-epoch QE.
    te_weight : float
        Weight of TE in the scalar score, also used to pick the best trial of a Pareto front.
    holdout : float
        Share of the (possibly limited) training rows kept out of training for scoring (0..0.9).
    limit : int or None
        Use at most this many training rows (seeded) per trial, before the holdout split.
    storage : str or None
        Optuna database URL (``postgresql+psycopg://user@host/db``, ``mysql+pymysql://...``) for
        workers on many machines; None: the journal file ``study.journal`` in the output folder.
    study_name : str
    seed : int
        Seed of the holdout split and of the sampler (each trial derives its own from it and
        its trial number).
    workers : int
        Worker processes this command starts on this host (1: trials run in the command itself).
    heartbeat_interval : int
        Seconds between a database worker's heartbeats while it runs a trial.
    grace_period : int
        Seconds without a heartbeat after which a database trial counts as dead: it is failed
        and queued again.
    max_retry : int
        How often the trial of a dead worker is queued again (0: never).
    """

    base: SomConfig = SomConfig(som=SomMapConfig(rows=10, cols=10), train=SomTrainConfig(device="auto"))
    space: dict[str, SearchParam] = Field(default_factory=_default_space)
    n_trials: int = Field(default=30, ge=1)
    timeout: float | None = Field(default=None, gt=0)
    objective: Literal["pareto", "scalar"] = "pareto"
    te_weight: float = Field(default=5.0, ge=0)
    holdout: float = Field(default=0.2, gt=0, lt=0.9)
    limit: int | None = Field(default=5000, gt=0)
    storage: str | None = None
    study_name: str = "som"
    seed: Seed = 0
    workers: int = Field(default=1, ge=1, le=64)
    heartbeat_interval: int = Field(default=10, ge=1)
    grace_period: int = Field(default=30, ge=2)
    max_retry: int = Field(default=1, ge=0)
