"""Typed, validated run configurations (YAML files + ``--set key=value`` overrides)."""

from cryodyna.config.load import CONFIGS, dump_yaml, load_config, resolved_config

__all__ = ["CONFIGS", "dump_yaml", "load_config", "resolved_config"]
