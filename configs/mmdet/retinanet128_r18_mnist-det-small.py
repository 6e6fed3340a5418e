# RetinaNet at 128x128 for mnist-det-small (autobin mmdet-data mnist-det-small
# data/mnist-det-small): the half-width, deep-stem ResNet-18 of ssd128_r18_mnist-det-small.py
# under mmdet's FPN and RetinaHead (two stacked convs with BatchNorm, 64 channels), binarized by
# the generic det-adabin recipe (autobin mmdet-config
# configs/mmdet/retinanet128_r18_mnist-det-small.py --recipe det-adabin ...).
#
# Anchors for the 128-pixel input: four levels at strides 8, 16, 32, 64 with base sizes 16, 32,
# 64, 128 (octave_base_scale 2) and one intermediate scale per octave; aspect ratios (h/w) 1 and
# 2 (digits are as tall as wide or taller).
# Data, schedule and runtime: _base_/mnist-det-small_128.py.
_base_ = ["./_base_/mnist-det-small_128.py"]

model = dict(
    type="RetinaNet",
    backbone=dict(
        type="ResNet",
        depth=18,
        base_channels=32,
        deep_stem=True,
        stem_channels=32,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=False,
        style="pytorch",
    ),
    neck=dict(
        type="FPN",
        in_channels=[64, 128, 256],
        out_channels=64,
        start_level=0,
        add_extra_convs="on_input",
        num_outs=4,
    ),
    bbox_head=dict(
        type="RetinaHead",
        num_classes=10,
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        norm_cfg=dict(type="BN", requires_grad=True),
        anchor_generator=dict(
            type="AnchorGenerator",
            octave_base_scale=2,
            scales_per_octave=2,
            ratios=[1.0, 2.0],
            strides=[8, 16, 32, 64],
        ),
        bbox_coder=dict(
            type="DeltaXYWHBBoxCoder",
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[1.0, 1.0, 1.0, 1.0],
        ),
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
    ),
    train_cfg=dict(
        assigner=dict(
            type="MaxIoUAssigner",
            pos_iou_thr=0.5,
            neg_iou_thr=0.4,
            min_pos_iou=0,
            ignore_iof_thr=-1,
        ),
        sampler=dict(type="PseudoSampler"),
        allowed_border=-1,
        pos_weight=-1,
        debug=False,
    ),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type="nms", iou_threshold=0.5),
        max_per_img=100,
    ),
)
