"""The official RCAN architecture (yulunzhang/RCAN, RCAN_TrainCode/code/model/rcan.py) in PyTorch.

The test and benchmark oracle: the same module tree as the official code, so state_dict() has the official key
names; loads canonical weights with strict=True.
"""
import math

import torch
from torch import nn


def default_conv(cin, cout, k, bias=True):
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


class MeanShift(nn.Conv2d):
    def __init__(self, rgb_range, rgb_mean, sign=-1):
        super().__init__(3, 3, kernel_size=1)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1)
        self.bias.data = sign * rgb_range * torch.Tensor(rgb_mean)


class Upsampler(nn.Sequential):
    def __init__(self, conv, scale, n_feat):
        m = []
        if (scale & (scale - 1)) == 0:
            for _ in range(int(math.log(scale, 2))):
                m.append(conv(n_feat, 4 * n_feat, 3))
                m.append(nn.PixelShuffle(2))
        elif scale == 3:
            m.append(conv(n_feat, 9 * n_feat, 3))
            m.append(nn.PixelShuffle(3))
        else:
            raise NotImplementedError(scale)
        super().__init__(*m)


class CALayer(nn.Module):
    def __init__(self, channel, reduction=16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1, padding=0, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel // reduction, channel, 1, padding=0, bias=True),
            nn.Sigmoid())

    def forward(self, x):
        return x * self.conv_du(self.avg_pool(x))


class RCAB(nn.Module):
    def __init__(self, conv, n_feat, kernel_size, reduction):
        super().__init__()
        body = [conv(n_feat, n_feat, kernel_size), nn.ReLU(True), conv(n_feat, n_feat, kernel_size),
                CALayer(n_feat, reduction)]
        self.body = nn.Sequential(*body)

    def forward(self, x):
        return self.body(x) + x


class ResidualGroup(nn.Module):
    def __init__(self, conv, n_feat, kernel_size, reduction, n_resblocks):
        super().__init__()
        body = [RCAB(conv, n_feat, kernel_size, reduction) for _ in range(n_resblocks)]
        body.append(conv(n_feat, n_feat, kernel_size))
        self.body = nn.Sequential(*body)

    def forward(self, x):
        return self.body(x) + x


class RCAN(nn.Module):
    def __init__(self, config, conv=default_conv):
        super().__init__()
        self.config = config   # a plain attribute (not in the state dict): tiling code reads the scale
        n_feats, k = config.n_feats, 3
        # Registration order as in the official file: sub_mean, add_mean, head, body, tail.
        self.sub_mean = MeanShift(config.rgb_range, config.rgb_mean, -1)
        self.add_mean = MeanShift(config.rgb_range, config.rgb_mean, 1)
        self.head = nn.Sequential(conv(config.n_colors, n_feats, k))
        body = [ResidualGroup(conv, n_feats, k, config.reduction, config.n_resblocks)
                for _ in range(config.n_resgroups)]
        body.append(conv(n_feats, n_feats, k))
        self.body = nn.Sequential(*body)
        self.tail = nn.Sequential(Upsampler(conv, config.scale, n_feats), conv(n_feats, config.n_colors, k))

    def forward(self, x):
        x = self.sub_mean(x)
        x = self.head(x)
        res = self.body(x)
        res += x
        x = self.tail(res)
        return self.add_mean(x)


def from_weights(weights, config):
    """The oracle holding these canonical weights (strict: every key, every shape)."""
    model = RCAN(config)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()}, strict=True)
    return model.eval()


def run(model, lr_hwc):
    """HWC float32 numpy in, HWC numpy out (float32, unclamped)."""
    x = torch.from_numpy(lr_hwc.copy()).permute(2, 0, 1)[None]
    with torch.no_grad():
        return model(x)[0].permute(1, 2, 0).numpy()
