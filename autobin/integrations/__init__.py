"""Layer 7 of autobin: integrations with other frameworks.

:mod:`autobin.integrations.mmdet` binarizes MMDetection detectors; it is the only place that
imports mmengine, mmcv or mmdet, and nothing in the core library imports it.
"""
