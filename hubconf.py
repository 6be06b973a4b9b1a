"""torch.hub entry points of m3l (thin: the registry, weights and cards live in m3l.weights.hub).

    model = torch.hub.load("PATH/TO/m3l", "ffdnet_color_blind", source="local", pretrained=True)

Every entry takes ``pretrained`` and ``weights`` (a local file or an http(s) URL) and returns
a RestorationModule; see ``m3l/weights/shipped/NAME.md`` for each shipped model's card.
"""

dependencies = ["torch", "safetensors", "lightning"]

from m3l.weights import hub as _hub  # noqa: E402

globals().update({_name: getattr(_hub, _name) for _name in _hub.ENTRY_POINTS})
