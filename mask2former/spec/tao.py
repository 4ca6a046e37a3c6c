"""TAO's Mask2Former spec files as they are written: the fields TAO carries that nothing here reads, and other
frameworks' names for this spec's fields (plumbing.spec_reader reads the files)."""

# Accepted so that TAO's files load, but nothing here reads them: listed once in a warning when they are set.
UNUSED = {
    "model_name": "TAO's model-agnostic task name",
    "encryption_key": "checkpoints are not encrypted",
    "wandb": "W&B is not built in; `automl run` tracks in MLflow",
    "dataset.label_map": "the categories come from the instance json",
    "dataset.quant_calibration_dataset.images_dir": "no quantization",
    "model.export": "no ONNX export",
    "model.backbone.swin.use_checkpoint": "no activation checkpointing",
    "train.activation_checkpoint": "no activation checkpointing",
    "train.is_dry_run": "no dry runs",
    "evaluate.trt_engine": "no TensorRT engines",
    "inference.trt_engine": "no TensorRT engines",
    "export": "no ONNX export",
    "gen_trt_engine": "no TensorRT engines",
    "quantize": "no quantization",
}

# Leaf names other frameworks use (Detectron2, HF Trainer, Lightning) -> this spec's leaf name.
FOREIGN_NAMES = {
    "learning_rate": "lr", "base_lr": "lr", "wd": "weight_decay", "epochs": "num_epochs", "max_epochs": "num_epochs",
    "num_queries": "num_object_queries", "num_object_query": "num_object_queries", "decoder_layers": "dec_layers",
    "encoder_layers": "transformer_enc_layers", "num_attention_heads": "nheads", "num_labels": "num_classes",
    "feature_size": "convs_dim", "mask_feature_size": "mask_dim", "gpus": "num_gpus", "devices": "num_gpus",
    "check_val_every_n_epoch": "validation_interval", "resume": "resume_training_checkpoint_path",
    "resume_from": "resume_training_checkpoint_path", "output_dir": "results_dir", "weights": "pretrained_weights",
    "min_size_train": "train_min_size", "max_size_train": "train_max_size", "min_size_test": "test_min_size",
    "max_size_test": "test_max_size", "backbone_lr_multiplier": "backbone_multiplier", "amp": "precision",
}  # fmt: skip
