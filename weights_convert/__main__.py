"""Convert an RCAN checkpoint to the canonical safetensors file, without torch (also `rcan-convert`).

Examples:
    python -m weights_convert RCAN_BIX2.pt -o rcan_x2.safetensors
    python -m weights_convert --info RCAN_BIX2.pt
"""
import json
import sys

from reference.support import cli

from .convert import ConvertError, info, write_canonical


def parser():
    ap = cli.parser("python -m weights_convert", __doc__)
    ap.add_argument("src", help="checkpoint: .pt/.pth (legacy or zip), or .safetensors")
    ap.add_argument("-o", "--output", help="canonical .safetensors to write")
    ap.add_argument("--info", action="store_true", help="print the detected layout, config and counts as JSON")
    ap.add_argument("--force", action="store_true", help="overwrite an existing output")
    ap.add_argument("--img-range", type=float, default=255.0,
                    help="BasicSR img_range the model was trained with (default 255)")
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if not args.info and not args.output:
        ap.error("give -o DST.safetensors or --info")
    try:
        if args.info:
            print(json.dumps(info(args.src, args.img_range), indent=2))
        else:
            c = write_canonical(args.src, args.output, args.force, args.img_range)
            print(f"{args.src} -> {args.output}: {c.layout} layout, {len(c.weights)} tensors, "
                  f"x{c.config.scale} G{c.config.n_resgroups}R{c.config.n_resblocks}F{c.config.n_feats}",
                  file=sys.stderr)
    except (ConvertError, OSError) as e:
        print(f"error: {args.src}: {e}", file=sys.stderr)
        return cli.USAGE   # an unusable checkpoint: nothing was written
    return cli.DONE


entry = cli.entry(main)   # the console script

if __name__ == "__main__":
    sys.exit(cli.run(main))
