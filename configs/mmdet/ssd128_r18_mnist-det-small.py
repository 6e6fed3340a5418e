# SSD at 128x128 for mnist-det-small (autobin mmdet-data mnist-det-small data/mnist-det-small):
# a half-width ResNet-18 (base 32 channels, deep stem: three 3x3 convs) under mmdet's SSDNeck and
# SSDHead, sized to train to convergence from scratch on a few CPU cores. Binarize it with the
# recipe ssd-adabin (autobin mmdet-config configs/mmdet/ssd128_r18_mnist-det-small.py --recipe
# ssd-adabin ...).
#
# Where the float MACs go once binarized: the first conv (3x3, 3 -> 16 channels, unlike a 7x7
# 3 -> 32 one: 1.8 vs 19 MMACs) and the head's prediction convs, which are 1x1 after a 3x3
# depthwise conv (SSDHead's use_depthwise, the SSDLite head: 1/9 of a 3x3 prediction conv's
# MACs), so about 97 % of the conv MACs are binary.
#
# Anchors are re-derived for the 128-pixel input and the digits of mnist-det-small (ink boxes
# about 4-40 px wide and 14-40 px tall): four levels at strides 8, 16, 32, 64 (feature maps
# 16, 8, 4, 2) with base sizes 12, 20, 32, 48 and second square anchors sqrt(min * max)
# (15, 25, 39, 59); aspect ratios 1:2 / 2:1 and 1:3 / 3:1 for tall digits such as "1".
# Data, schedule and runtime: _base_/mnist-det-small_128.py.
_base_ = ["./_base_/mnist-det-small_128.py"]
input_size = 128

model = dict(
    type="SingleStageDetector",
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
        type="SSDNeck",
        in_channels=(64, 128, 256),
        out_channels=(64, 128, 256, 128),
        level_strides=(2,),
        level_paddings=(1,),
        l2_norm_scale=None,
        norm_cfg=dict(type="BN"),
    ),
    bbox_head=dict(
        type="SSDHead",
        num_classes=10,
        in_channels=(64, 128, 256, 128),
        use_depthwise=True,
        norm_cfg=dict(type="BN"),
        act_cfg=dict(type="ReLU"),
        anchor_generator=dict(
            type="SSDAnchorGenerator",
            scale_major=False,
            input_size=input_size,
            strides=[8, 16, 32, 64],
            ratios=[[2, 3], [2, 3], [2, 3], [2, 3]],
            min_sizes=[12, 20, 32, 48],
            max_sizes=[20, 32, 48, 72],
        ),
        bbox_coder=dict(
            type="DeltaXYWHBBoxCoder",
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[0.1, 0.1, 0.2, 0.2],
        ),
    ),
    train_cfg=dict(
        assigner=dict(
            type="MaxIoUAssigner",
            pos_iou_thr=0.5,
            neg_iou_thr=0.5,
            min_pos_iou=0.0,
            ignore_iof_thr=-1,
            gt_max_assign_all=False,
        ),
        sampler=dict(type="PseudoSampler"),
        smoothl1_beta=1.0,
        allowed_border=-1,
        pos_weight=-1,
        neg_pos_ratio=3,
        debug=False,
    ),
    test_cfg=dict(
        nms_pre=1000,
        nms=dict(type="nms", iou_threshold=0.45),
        min_bbox_size=0,
        score_thr=0.02,
        max_per_img=100,
    ),
)
