"""The send policy: the one place that decides whether, when and how an outbound message goes.

Every outbound message (flow, broadcast, agent) is queued in its contact's outbox and leaves it
through ``Effects.deliver_outbox``; before that, the turn that queued it passes it through
``SendPolicy.screen_turn``. Both ask the same rules, here:

- ``settings``: a workspace's sending settings (quiet hours, typing indicator) and their checks;
- ``quiet_hours``: the calendar arithmetic (when does the quiet period around a moment end);
- ``zones``: the contact's time zone (a ``timezone`` variable, the phone's country, the workspace);
- ``rules``: refusals before sending (marketing to the US, consent, a closed window) and the
  backoffs for Meta's "later" errors (131049 marketing cap, 131048, 131056 pair rate);
- ``holds``: what a hold does to the contact document (pure, inside the actor's turn);
- ``policy``: ``SendPolicy``, the decision point the actor and the effects call.

Pure except ``policy`` (which reads the workspace's settings through a loader it is given).
Layer 3 (with the machines). May import ``machines`` (pure), ``clock``, ``documents``, ``window``,
``expiring``, ``errors``; nothing from ``store``/``channels`` but the pure country lookup of
``channels.whatsapp.costs`` and the send codes of ``channels.base``.
"""
