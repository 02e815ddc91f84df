"""The streaming rule engine: readings in, findings ("this holds now" / "no longer") out.

`rules.engine.RuleEngine` is pure and synchronous (event time, an injected
clock); `rules.service.RuleService` plugs it into the ingester as a
`ReadingConsumer`, ticks it, checkpoints it and reloads its rules file.
"""
