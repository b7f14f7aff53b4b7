"""The MLP decoder of LIIF (`mlp`): Linear-ReLU stack, no norm, no dropout."""
from liif.models.registry import register


@register("mlp")
class MLP:
    def __init__(self, in_dim: int, out_dim: int, hidden_list: list[int]):
        super().__init__()
        nn = self.backend.nn
        layers = []
        last = in_dim
        for hidden in hidden_list:
            layers += [nn.Linear(last, hidden), nn.ReLU()]
            last = hidden
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        shape = x.shape[:-1]
        x = self.layers(x.view(-1, x.shape[-1]))
        return x.view(*shape, -1)
