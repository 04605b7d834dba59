"""The wire between the supervisor, its fork server and each child, one module per channel.

- `transport`: framing and codec shared by every channel, send/receive with
  descriptors (SCM_RIGHTS), `ProtocolError`.
- `broker`: the broker channel (child <-> its broker session): path
  requests and their replies, and the child's notices (sandbox report,
  compile notice, result). Every request is decoded and validated before a
  handler sees it.
- `setup`: the start of a run (parent -> child, once): `Start`, the `Setup`
  blob and `ChildLimits`, the child's limits derived once for the fork
  server and the child.
- `control`: the fork server's channel (supervisor <-> fork server).

Each channel numbers its own ops (`BrokerOp`, `SetupOp`, `ControlOp`); the
two that share the child's socket use disjoint numbers, so a message sent
on the wrong one is an unknown op, never another message.
"""
