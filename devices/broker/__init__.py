"""Broker provisioning: device accounts on Mosquitto's dynamic security plugin.

How it works: docs/registry.md.
"""
