"""Where CALF helps: results by tumour size and training-set imbalance, the stability of
the ranking and the robustness of the verdict (``calf analyse``; README, "Analysis").

Modules: ``strata`` (tumour sizes, size classes, training-set regimes, per-patient
advantages), ``size_effect`` (CALF against each baseline per size class), ``interaction``
(the change of CALF's advantage with tumour size; imbalance against advantage across
groups), ``ranks`` (bootstrap rank stability, significance map), ``robustness`` (verdicts
under every empty-mask preset and metric) and ``run`` (all of it for one study, written
atomically).
"""
