"""Normalize decoded flow records into ECS flow documents.

Modules: ``community_id`` (Community ID v1), ``flow_id`` (Filebeat's ``flow.id``),
``locality`` (internal networks, ``*.locality`` and ``network.direction``).
"""
