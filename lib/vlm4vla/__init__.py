"""vlm4vla: a reproducible re-run of the VLM4VLA study (which VLM makes the best VLA policy, and why).

Parts and who may import whom (data flows one way):
    envs -> data -> backbones / adapter -> train -> evaluate -> stats -> pipeline
- ``envs``: simulators, task suites, instructions, scripted experts, rendering. Knows no model.
- ``data``: demonstrations, the general corpus, auxiliary datasets. Uses ``envs``; knows no model.
- ``backbones``: the backbone contract, one small file per VLM family, tokenizers, zoo pretraining.
- ``adapter``: ActionQuery, action head, losses, freezing, the policy wrapper. Uses ``backbones``.
- ``train``: the one training loop. Uses ``adapter`` and ``data``.
- ``evaluate``: the one closed-loop harness. Uses ``envs`` and the ``Policy`` protocol only.
- ``probes``: what a VLM can do (general VQA, embodied probes, linear probes of vision features).
- ``stats``: intervals, correlations, bootstrap, permutation tests. Pure.
- ``pipeline``: notebook runner, profiles, reports, index. Knows nothing of the science.
"""

__version__ = "0.1.0"
