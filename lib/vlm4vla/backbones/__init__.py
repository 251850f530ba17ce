"""See the package docstring of vlm4vla for what this part may import.

``base`` (the contract: Backbone, BackboneConfig, ModuleGroups, make_backbone, load_backbone),
``registry`` (Family hooks), one file per family (``qwen2_vl``, ``paligemma``, ``idefics3``,
``llava``), ``tokenizer`` (BPE trained here), ``pretrain`` (general-corpus pretraining), ``zoo``
(named members, build_zoo_member) and ``zoo_plots`` (notebook figures).
"""
