"""Debate protocols: `reconcile` (ReConcile, confidence-weighted) and `debate` (Du et al.)."""

from __future__ import annotations

from magdi.protocol import Demo, ProtocolConfig
from services.generator.protocols.base import TurnRequest, parse_turn
from services.generator.protocols.debate import DebateProtocol
from services.generator.protocols.demos import DemoError, demos_for, load_convincing
from services.generator.protocols.reconcile import ReconcileProtocol

PROTOCOLS = {"reconcile": ReconcileProtocol, "debate": DebateProtocol}

__all__ = [
    "PROTOCOLS", "DebateProtocol", "Demo", "DemoError", "ProtocolConfig", "ReconcileProtocol",
    "TurnRequest", "build_protocol", "demos_for", "load_convincing", "parse_turn",
]


def build_protocol(config: ProtocolConfig, agent_stems: dict[str, str]) -> ReconcileProtocol | DebateProtocol:
    """The protocol for `config`; `agent_stems` maps agent name -> convincing-samples file stem."""
    config.check_agents(list(agent_stems))
    return PROTOCOLS[config.name](config, demos_for(agent_stems, config.demos))
