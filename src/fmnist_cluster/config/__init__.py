"""Typed stage configurations, loaded from YAML and ``--set`` overrides.

Every stage has one pydantic model; models forbid unknown keys, so a mistyped key is an error
that lists the valid keys instead of a silently ignored setting. The shipped
``configs/<stage>.yaml`` files hold exactly these defaults (a test keeps them in step).

* :mod:`~fmnist_cluster.config.base` -- :class:`StrictModel`, :func:`load_config` (the only
  place that reads YAML), ``--set`` overrides and the help texts' defaults;
* :mod:`~fmnist_cluster.config.yaml_text` -- YAML text as a config reads it;
* :mod:`~fmnist_cluster.config.preprocess` -- ``preprocess``;
* :mod:`~fmnist_cluster.config.som` -- ``train-som`` and ``tune``;
* :mod:`~fmnist_cluster.config.cnn` -- ``train-cnn`` and ``encode``;
* :mod:`~fmnist_cluster.config.cluster` -- ``cluster`` with its decoder and explainer;
* :mod:`~fmnist_cluster.config.embed` and :mod:`~fmnist_cluster.config.report`.

Every public name is importable from this package.
"""

from fmnist_cluster.config.base import (
    MAX_EPOCHS,
    MAX_NEURONS,
    MAX_THREADS,
    SPLITS,
    Split,
    StrictModel,
    config_to_yaml,
    get_dotted,
    literal_choices,
    load_config,
    one_of,
    option_flag,
    overrides_help,
    parse_override,
    set_dotted,
    short_repr,
)
from fmnist_cluster.config.cluster import (
    EPS_RULES,
    LINKAGES,
    AgglomerativeConfig,
    ClusterConfig,
    DBSCANConfig,
    DBSCANReduceConfig,
    DecodeConfig,
    EpsRule,
    ExplainConfig,
    HDBSCANConfig,
    KMeansConfig,
    Linkage,
    ReduceConfig,
)
from fmnist_cluster.config.cnn import (
    ACTIVATIONS,
    LAYER_TYPES,
    PRECISIONS,
    Activation,
    AugmentConfig,
    CnnConfig,
    CnnTrainConfig,
    EncodeConfig,
    LayerSpec,
    LayerType,
    Precision,
)
from fmnist_cluster.config.embed import TSNE_METHODS, EmbedConfig, QualityConfig, TSNEConfig, TsneMethod, UMAPConfig
from fmnist_cluster.config.preprocess import SOURCES, PreprocessConfig, Source, Standardize
from fmnist_cluster.config.report import ReportConfig
from fmnist_cluster.config.som import (
    BATCH_NEIGHBOURHOODS,
    ENGINES,
    INITS,
    LR_DECAYS,
    NEIGHBOURHOODS,
    ORDERS,
    SCHEDULES,
    SIGMA_DECAYS,
    TOPOLOGIES,
    Engine,
    Init,
    LrDecay,
    Neighbourhood,
    Order,
    SearchParam,
    SigmaDecay,
    SigmaSchedule,
    SomAnalysisConfig,
    SomConfig,
    SomMapConfig,
    SomTrainConfig,
    Topology,
    TuneConfig,
)
from fmnist_cluster.config.yaml_text import YamlSyntaxError, read_yaml
from fmnist_cluster.device import DEVICES, Device

COMMAND_CONFIGS: dict[str, tuple[type[StrictModel], str]] = {
    "preprocess": (PreprocessConfig, "configs/preprocess.yaml"),
    "train-som": (SomConfig, "configs/som.yaml"),
    "tune": (TuneConfig, "configs/tune.yaml"),
    "train-cnn": (CnnConfig, "configs/cnn.yaml"),
    "encode": (EncodeConfig, "configs/encode.yaml"),
    "cluster": (ClusterConfig, "configs/cluster.yaml"),
    "embed": (EmbedConfig, "configs/embed.yaml"),
    "report": (ReportConfig, "configs/report.yaml"),
}
"""Every command's config model and the shipped file that holds its defaults."""

__all__ = [
    "ACTIVATIONS",
    "BATCH_NEIGHBOURHOODS",
    "COMMAND_CONFIGS",
    "DEVICES",
    "ENGINES",
    "EPS_RULES",
    "INITS",
    "LAYER_TYPES",
    "LINKAGES",
    "LR_DECAYS",
    "MAX_EPOCHS",
    "MAX_NEURONS",
    "MAX_THREADS",
    "NEIGHBOURHOODS",
    "ORDERS",
    "PRECISIONS",
    "SCHEDULES",
    "SIGMA_DECAYS",
    "SOURCES",
    "SPLITS",
    "TOPOLOGIES",
    "TSNE_METHODS",
    "Activation",
    "AgglomerativeConfig",
    "AugmentConfig",
    "ClusterConfig",
    "CnnConfig",
    "CnnTrainConfig",
    "DBSCANConfig",
    "DBSCANReduceConfig",
    "DecodeConfig",
    "Device",
    "EmbedConfig",
    "EncodeConfig",
    "Engine",
    "EpsRule",
    "ExplainConfig",
    "HDBSCANConfig",
    "Init",
    "KMeansConfig",
    "LayerSpec",
    "LayerType",
    "Linkage",
    "LrDecay",
    "Neighbourhood",
    "Order",
    "Precision",
    "PreprocessConfig",
    "QualityConfig",
    "ReduceConfig",
    "ReportConfig",
    "SearchParam",
    "SigmaDecay",
    "SigmaSchedule",
    "SomAnalysisConfig",
    "SomConfig",
    "SomMapConfig",
    "SomTrainConfig",
    "Source",
    "Split",
    "Standardize",
    "StrictModel",
    "TSNEConfig",
    "Topology",
    "TsneMethod",
    "TuneConfig",
    "UMAPConfig",
    "YamlSyntaxError",
    "config_to_yaml",
    "get_dotted",
    "literal_choices",
    "load_config",
    "one_of",
    "option_flag",
    "overrides_help",
    "parse_override",
    "read_yaml",
    "set_dotted",
    "short_repr",
]
