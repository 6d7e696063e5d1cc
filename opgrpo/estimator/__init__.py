"""The similarity estimator: a sentence-transformers model fine-tuned to tell perspectives apart.

Modules, in the order the stage uses them:

- ``config``      EstimatorConfig and its sections (MiningConfig, JudgeConfig, TrainConfig, SearchConfig)
- ``triplets``    Triplet, the masked reference texts, the mining file, the train/validation split
- ``pair_labels`` human same/different pair labels (a judge for mining, label-defined held-out triplets)
- ``mining``      mine (anchor, positive, negative) triplets from training items with a judge
- ``train``       fine-tune with MultipleNegativesRankingLoss; the Optuna hyperparameter search
- ``evaluate``    triplet accuracy and MNRL loss, base vs fine-tuned with a sign test, held-out items
- ``stage``       ``run_estimator_stage``: judge -> mine -> (search) -> train -> evaluate, into a run dir

Heavy libraries (sentence-transformers, transformers, optuna) are imported inside the functions that
need them, so importing this package is cheap.
"""
from opgrpo.estimator.config import (
           EstimatorConfig,
           JudgeConfig,
           MiningConfig,
           SearchConfig,
           TrainConfig,
)
from opgrpo.estimator.evaluate import (
           evaluate_estimator,
           evaluate_heldout,
           paired_comparison,
)
from opgrpo.estimator.mining import SKIP_REASONS, mine_triplets
from opgrpo.estimator.pair_labels import PairLabels, labelled_triplets
from opgrpo.estimator.stage import (
           EstimatorModels,
           MiningFailed,
           mining_judge,
           run_estimator_stage,
)
from opgrpo.estimator.train import search_hyperparameters, train_estimator
from opgrpo.estimator.triplets import (
           Triplet,
           load_triplets,
           masked_explanations,
           split_triplets,
)

__all__ = ["SKIP_REASONS", "EstimatorConfig", "EstimatorModels", "JudgeConfig", "MiningConfig", "MiningFailed",
           "PairLabels",
           "SearchConfig", "TrainConfig", "Triplet", "evaluate_estimator", "evaluate_heldout",
           "labelled_triplets", "load_triplets", "masked_explanations", "mine_triplets", "mining_judge",
           "paired_comparison", "run_estimator_stage", "search_hyperparameters", "split_triplets",
           "train_estimator"]
