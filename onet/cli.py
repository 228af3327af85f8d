"""The `onet` command line: argument parsing only; each verb calls one library function.

Exit codes: 0 ok, 2 usage or config error, 1 runtime failure. Errors are one
sentence on stderr; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from onet.data import BUILTIN_OBJECTS_PER_CLASS
from onet.utils.batch import BATCH_RULE
from onet.utils.errors import ConfigError, Terminated, UsageError

EPILOGS = {
    "preprocess": """examples:
  onet preprocess ~/ShapeNetCore.v2 data/shapenet --workers 8
  onet preprocess my_meshes/ data/mine --n-views 24 --img-size 137
  onet preprocess my_meshes/ data/mine --depth             # also depth maps beside the images
  onet preprocess my_meshes/ data/mine --shard 3/16      # one job of a cluster array
  onet preprocess my_meshes/ data/mine --near-surface 100000 --near-sigma 0.01,0.05
  onet preprocess my_meshes/ data/mine --n-views 12 --overwrite   # redo with other options
""" + BATCH_RULE.format(where="OUTPUT/preprocess_report.jsonl") + """
Rerunning resumes; a rerun with other options is refused (the dataset's stamp.yaml
records them) unless --overwrite.
""",
    "train": """examples:
  onet train configs/demo.yaml
  onet train configs/img.yaml data.path=data/ShapeNet out_dir=out/img
  onet train configs/pointcloud.yaml train.batch_size=32 train.max_iters=100000 --device cuda
  torchrun --nproc_per_node 4 -m onet train configs/img.yaml      # 4 GPUs, DDP
  onet train configs/pointcloud_cpu.yaml data.path=data/mine   # a CPU: one process per core (train.cpu_processes)
  onet train configs/latent_gan.yaml latent_gan.gamma=1   # latent GAN on a trained VAE's codes
      (NS loss + R1 = gamma/2 E||grad_x D||^2, the thesis convention: public code's gamma 10 is 20 here)
Running the same command again resumes from out_dir/model.pt.
""",
    "generate": """examples:
  onet generate configs/demo.yaml                       # meshes for the test split
  onet generate configs/img.yaml --input my_photos/     # meshes for your own images
  onet generate configs/pointcloud.yaml --input scans/ --format obj
  onet generate configs/demo.yaml --format glb generation.save_grid=true   # + probability grids (npz)
  onet generate configs/unconditional.yaml --samples 16
  onet generate configs/unconditional.yaml --encode     # test split through the VAE's posterior means
  onet generate configs/unconditional.yaml --interpolate 8 --between 03001627/1a2b 03001627/3c4d
  onet generate configs/latent_gan.yaml --samples 16    # the latent GAN's samples, decoded by its VAE
  torchrun --nproc_per_node 4 -m onet generate configs/img.yaml   # 4 processes (GPUs), same meshes
  onet generate configs/img.yaml --shard 3/16           # one job of a cluster array; then run it unsharded
""" + BATCH_RULE.format(where="failures.csv in the output folder") + """
Rerunning resumes; a rerun with other options (checkpoint, threshold, resolution, format,
seed, ...) is refused (the folder's stamp.yaml records them) unless --overwrite.
""",
    "eval": """examples:
  onet eval configs/demo.yaml                           # score what `onet generate` wrote
  onet eval configs/voxels.yaml --eval-input           # the "Input" baseline row
  onet eval --pred out/meshes --gt data/reference_meshes
  onet eval configs/img.yaml --sweep                    # pick the threshold on the val split
  onet eval configs/latent_gan.yaml --generative        # MMD / COV / 1-NNA of the samples vs the test split
  onet eval --generative --pred out/a/generation_samples --gt out/b/generation_samples
  torchrun --nproc_per_node 4 -m onet eval configs/img.yaml       # objects split over 4 processes
  onet eval configs/img.yaml --shard 3/16               # one job of an array; `onet eval` merges after
  onet eval configs/img.yaml --pred out/img/my_generation   # meshes generated with --output
""" + BATCH_RULE.format(where="failures.csv beside the tables") + """
A prediction that cannot be read is scored worst-case and counted as failed; finding no
prediction at all is a failed run (exit 1).
""",
    "import-checkpoint": """examples:
  onet import-checkpoint onet_img2mesh_3-f786b04a.pt --config configs/img.yaml --out out/img/pretrained.pt
  onet generate configs/img.yaml --checkpoint out/img/pretrained.pt --input my_photos/
  onet import-checkpoint onet_pcl2mesh-5c0be168.pt --config configs/pointcloud.yaml --out out/pcl/pretrained.pt
  onet import-checkpoint onet_voxel2mesh-52ee34d4.pt --config configs/voxels.yaml --out out/vox/pretrained.pt
  onet import-checkpoint onet_uncond_chairs-800ea1f3.pt --config configs/unconditional.yaml --out out/chairs.pt
Converts a checkpoint of the reference Occupancy Networks code (published or
trained with it); onet never downloads one itself. A key or shape that does
not match the config's model is an error (exit 2) naming the keys.
""",
    "report": """examples:
  onet report out/demo                  # writes out/demo/report/index.html; open it in a browser
  onet report out/img/onet --data data/ShapeNet --max-objects 100
The page is static (no server): config, training curves, the per-class table
(click a header to sort), a gallery of input / prediction / reference sorted
worst IoU first, the threshold sweep and timings, whichever the folder holds.
""",
    "gan": """gamma convention: R1 = gamma/2 * E_data ||grad_x D||^2 and R2 = gamma/2 * E_gen ||grad_x D||^2
(the thesis's and the ICML-2018 slides'). Much public code adds gamma * E||grad_x D||^2 without
the 1/2: its gamma = 10 is gamma = 20 here. WGAN-GP: gamma * E(||grad_x D(x_hat)|| - 1)^2.
examples:
  onet gan dirac                                   # every method: eigenvalues, closed forms, SimGD/AltGD
  onet gan dirac --gamma 1 --sigma 1.4 --h 0.05 --steps 2000 --out out/gan/dirac
  onet gan dirac --dim 64 --methods gan,r1,instance-noise     # the n-D Dirac-GAN of Ch. 4
  onet gan toy four-points --reg r1 --gamma 1      # parameter error over iterations
  onet gan toy ellipse --reg none --scheme sim
  onet gan bench2d --quick                         # the 2-D benchmark of Table 8.1, sub-grid
  onet gan bench2d --device cuda --out out/gan/bench2d_full
""",
    "compare": """examples:
  onet compare out/demo out/demo_r2n2 out/demo_psgn          # rows ONet, 3D-R2N2, PSGN
  onet compare out/voxels/onet --eval-input out/voxels/onet   # ONet against its input voxels
  onet compare out/a out/b --names "ONet" "ONet, no CBN" --per-class --format latex
  onet compare out/a out/b --metrics all --output out/compare  # also writes compare.{md,tex,csv,json}
RUN_DIR is a config's out_dir (after `onet eval`) or an eval folder holding eval.json.
""",
    "demo": """examples:
  onet demo                       # synthetic data -> train -> generate -> eval, on CPU
  onet demo --out out/demo train.max_iters=300    # a shorter training run
""",
}


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onet", formatter_class=_formatter,
        description="Occupancy Networks: learning-based 3D reconstruction from images, point clouds and voxels.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    from onet import __version__
    parser.add_argument("--version", action="version", version=f"onet {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    def verb(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOGS[name], formatter_class=_formatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks on errors")
        return p

    def config_args(p, required=True):
        p.add_argument("config", nargs=None if required else "?", help="YAML config file (inherits configs/default.yaml)")
        p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                       help="config overrides, values parsed as YAML (e.g. train.max_iters=100)")
        p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                       help="compute device (default: the config's `device`, normally auto)")

    p = verb("preprocess", "Turn raw meshes (a ShapeNet tree or any folder of meshes) into a training dataset.")
    p.add_argument("input", help="ShapeNetCore v1/v2 folder, or a folder of mesh files (obj, off, ply, stl, glb, gltf, "
                                  "dae; 3ds, ac, fbx, blend, x ... through assimp) with one sub-folder per category")
    p.add_argument("output", help="dataset folder to write (DESIGN §4 layout)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--shard", default="0/1", metavar="I/N", help="process only shard I of N (for cluster array jobs)")
    p.add_argument("--n-points", type=int, default=100000, help="uniform occupancy samples per object")
    p.add_argument("--n-surface", type=int, default=100000, help="surface samples (with normals) per object")
    p.add_argument("--n-views", type=int, default=24, help="rendered views per object")
    p.add_argument("--img-size", type=int, default=137, help="rendering size in pixels")
    p.add_argument("--voxel-resolution", type=int, default=32, help="voxel grid resolution")
    p.add_argument("--watertight-resolution", type=int, default=128,
                   help="grid resolution of the watertight remeshing (higher: finer, slower)")
    p.add_argument("--depth", action="store_true",
                   help="also write depth maps of the views (<img folder>/depth.npz, see data/README.md)")
    p.add_argument("--no-materials", action="store_true",
                   help="render every mesh grey, ignoring its colours and textures")
    p.add_argument("--near-surface", type=int, default=0, metavar="N",
                   help="also write N occupancy samples around the surface to points_near_surface.npz "
                        "(default 0: none; points.npz stays the published uniform samples)")
    p.add_argument("--near-sigma", default="0.01", metavar="S[,S2]",
                   help="std of the near-surface offsets in unit-cube units; two scales split the points "
                        "evenly, e.g. 0.01,0.05 (default 0.01)")
    p.add_argument("--up-axis", default="y", choices=["y", "z", "x", "-y", "-z", "-x"],
                   help="the axis your meshes point up: z for Blender, 3ds Max and most CAD exports; each mesh is "
                        "rotated to point up +y, as ShapeNet and the published models do (default y: as they are)")
    p.add_argument("--splits-from", default=None, metavar="DIR",
                   help="folder with <category>/{train,val,test}.lst to use instead of a seeded 70/10/20 split")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling and splits")
    p.add_argument("--overwrite", action="store_true",
                   help="redo every object, also when OUTPUT was made with other options")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    p = verb("train", "Train an occupancy network (resumes when out_dir already holds a checkpoint).")
    config_args(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    p = verb("generate", "Extract meshes for the test split, or for a folder of your own inputs.")
    config_args(p)
    p.add_argument("--input", default=None, metavar="DIR",
                   help="folder of images (jpg/png), point clouds (ply/xyz/txt/npy/npz; meshes of any format onet "
                        "reads are sampled on their surface) or voxels (binvox/npy)")
    p.add_argument("--output", default=None, metavar="DIR", help="output folder (default: out_dir/generation[_input])")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default: out_dir/<test.model_file>)")
    p.add_argument("--format", choices=["ply", "obj", "off", "glb", "stl"], default=None,
                   help="mesh file format (default: the config's generation.mesh_format, normally ply)")
    p.add_argument("--samples", type=int, default=None, metavar="N",
                   help="unconditional models: draw N shapes from the prior")
    p.add_argument("--interpolate", type=int, default=None, metavar="STEPS",
                   help="unconditional models: also write a latent interpolation between two samples")
    p.add_argument("--between", nargs=2, default=None, metavar=("A", "B"),
                   help="with --interpolate: interpolate between two dataset shapes (category/model_id) "
                        "through their VAE posterior means")
    p.add_argument("--encode", action="store_true",
                   help="VAE: reconstruct the test split through the posterior means (score with `onet eval`)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="generate only shard I of N (cluster array jobs); a final unsharded run merges the tables")
    p.add_argument("--overwrite", action="store_true",
                   help="clear the output folder's meshes and redo them, also when made with other options")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    p = verb("eval", "Score generated meshes: IoU, Chamfer-L1, normal consistency, F-score, as tables.")
    config_args(p, required=False)
    p.add_argument("--pred", default=None,
                   help="direct mode (with --gt): predicted mesh file or folder; with CONFIG alone: the generation "
                        "folder to score against the dataset (default: the latest `onet generate CONFIG`)")
    p.add_argument("--gt", default=None, help="direct mode: watertight reference mesh file or folder")
    p.add_argument("--output", default=None, metavar="DIR", help="where tables go (default: out_dir/eval)")
    p.add_argument("--eval-input", action="store_true",
                   help="score the inputs themselves (voxels as meshes, point clouds on surface metrics)")
    p.add_argument("--sweep", action="store_true", help="sweep the threshold tau on the validation split")
    p.add_argument("--generative", action="store_true",
                   help="score a folder of sampled shapes as a set: MMD-CD, COV-CD, 1-NNA (and on latent codes) "
                        "against the test split, or against --gt")
    p.add_argument("--full-sweep", action="store_true", help="with --sweep: mesh and score at every tau (slow)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="score only shard I of N into per-object records; a final unsharded `onet eval` merges them")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    p = verb("import-checkpoint", "Convert a checkpoint of the reference ONet code into an onet checkpoint.")
    p.add_argument("reference", metavar="REF.pt", help="reference checkpoint ({'model': state_dict, ...} or a state dict)")
    p.add_argument("--config", required=True,
                   help="onet config describing the same network (configs/img.yaml, pointcloud, voxels, unconditional)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides (e.g. model.c_dim=128)")
    p.add_argument("--out", required=True, metavar="PATH", help="onet checkpoint to write")

    p = verb("report", "Write a static HTML report of a run folder (OUT_DIR/report/index.html).")
    p.add_argument("out_dir", metavar="OUT_DIR", help="run folder (a config's out_dir)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="dataset folder for the reference renderings (default: the run config's data.path)")
    p.add_argument("--max-objects", type=int, default=None, metavar="N",
                   help="show only the N worst objects in the gallery (default: all evaluated objects)")
    p.add_argument("--size", type=int, default=160, metavar="PX", help="thumbnail size in pixels (default 160)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    # ---- onet gan (issue 14): GAN training dynamics; all work in onet.gan.run ----
    p = verb("gan", "GAN training dynamics: Dirac-GAN diagnostics, toy games, the 2-D benchmark (thesis Part I).")
    games = p.add_subparsers(dest="game", metavar="GAME")
    games.required = True

    def game(name, help_text):
        g = games.add_parser(name, help=help_text, description=help_text, epilog=EPILOGS["gan"],
                             formatter_class=_formatter)
        g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        g.add_argument("--no-progress", action="store_true", help="hide progress bars")
        return g

    g = game("dirac", "The Dirac-GAN (thesis Ch. 3-4) for every method: Jacobian eigenvalues, closed forms, "
                      "SimGD/AltGD from (1, 1), a vector-field PNG per method.")
    g.add_argument("--methods", default=None, help="comma-separated subset (default all): gan, ns-gan, wgan, "
                   "wgan-gp, instance-noise, r1, r2, consensus, ns-r1, nk")
    g.add_argument("--gamma", type=float, default=0.3, help="gamma of R1/R2/consensus/WGAN-GP (default 0.3; "
                   "critical R1 gamma = 2|rho1| = 1)")
    g.add_argument("--sigma", type=float, default=0.7, help="instance noise std (default 0.7; critical 1.41)")
    g.add_argument("--eta", type=float, default=0.5, help="Nagarajan-Kolter eta (default 0.5)")
    g.add_argument("--h", type=float, default=0.1, help="learning rate h_g = h_d (default 0.1)")
    g.add_argument("--steps", type=int, default=500, help="SimGD/AltGD steps (default 500)")
    g.add_argument("--n-d", type=int, default=1, help="AltGD discriminator steps per generator step (default 1)")
    g.add_argument("--dim", type=int, default=1, help="n of the n-D Dirac-GAN (default 1: x0 = 0)")
    g.add_argument("--out", default="out/gan/dirac", help="output folder (default out/gan/dirac)")

    g = game("toy", "The Ellipse and Four Points games (thesis Ch. 5-6): parameter error over iterations.")
    g.add_argument("name", choices=["ellipse", "four-points"], help="which game")
    g.add_argument("--reg", choices=["none", "r1", "r2"], default="none", help="discriminator penalty")
    g.add_argument("--gamma", type=float, default=1.0, help="gamma of R1/R2 (default 1)")
    g.add_argument("--h", type=float, default=0.1, help="learning rate h_g = h_d (default 0.1)")
    g.add_argument("--steps", type=int, default=3000, help="iterations (default 3000)")
    g.add_argument("--scheme", choices=["alt", "sim"], default="alt", help="AltGD or SimGD (default alt)")
    g.add_argument("--loss", choices=["standard", "ns"], default="standard", help="generator loss")
    g.add_argument("--target", type=float, nargs=2, default=(1.0, 1.0), metavar=("W", "H"),
                   help="width and height of the target ellipse / rectangle (default 1 1)")
    g.add_argument("--out", default="out/gan/toy", help="output folder (default out/gan/toy)")

    g = game("bench2d", "The 2-D benchmark of thesis §8.1 / Table 8.1: many small GANs trained at once.")
    g.add_argument("--quick", action="store_true", help="fewer iterations and a sub-grid (minutes on a CPU)")
    g.add_argument("--iters", type=int, default=None, help="override the number of generator iterations")
    g.add_argument("--methods", default=None, help="subset of unreg, wgan-gp-1, wgan-gp-5, r1, r2 (default all)")
    g.add_argument("--distributions", default=None, help="subset of gaussian, line, circle, four-lines, "
                   "four-squares, eight (default all)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu", help="compute device (default cpu)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="torch.compile each group's steps (needs a C++ compiler; falls back to eager when it "
                        "cannot build); auto: on from 10,000 iterations, so the full grid but not --quick")
    g.add_argument("--out", default="out/gan/bench2d", help="output folder (default out/gan/bench2d)")
    # ---- end onet gan ----

    p = verb("compare", "Put the evaluations of several runs side by side, as in the thesis's tables.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (out_dir) or eval folders, one row each")
    p.add_argument("--names", nargs="+", default=None, metavar="NAME",
                   help="row names, one per RUN_DIR (default: the method: ONet, 3D-R2N2, PSGN)")
    p.add_argument("--eval-input", default=None, metavar="DIR",
                   help="a run (or eval folder) whose `onet eval --eval-input` result is the first row, Input")
    p.add_argument("--metrics", nargs="+", default=None, metavar="KEY",
                   help="columns: iou chamfer_l1 normal_consistency accuracy completeness fscore@0.01, or all "
                        "(default: iou chamfer_l1 normal_consistency)")
    p.add_argument("--per-class", action="store_true", help="rows = classes, columns = metric x method")
    p.add_argument("--format", choices=["markdown", "latex", "csv", "json"], default="markdown",
                   help="what to print (default markdown)")
    p.add_argument("--output", default=None, metavar="DIR", help="also write compare.{md,tex,csv,json} there")
    p.add_argument("--chamfer-scale", type=float, default=10,
                   help="factor for printed distances (default 10, as in the literature)")

    p = verb("demo", "Run everything end to end on a built-in synthetic dataset, on CPU, in minutes.")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="overrides of configs/demo.yaml (e.g. train.max_iters=300 for a shorter run)")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--objects-per-class", type=int, default=BUILTIN_OBJECTS_PER_CLASS,
                   help=f"synthetic objects per class (default {BUILTIN_OBJECTS_PER_CLASS})")
    p.add_argument("--data", default="data/synthetic", help="where the synthetic dataset is built or reused")
    p.add_argument("--config", default=None, help="config to train (default configs/demo.yaml)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu", help="compute device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def _run(args) -> int:
    from onet.config import default_config, load_config

    if args.verb == "preprocess":
        from onet.preprocess import run_preprocess
        return run_preprocess(args)

    if args.verb == "train":
        from onet.training import launch, processes_for, train
        from onet.utils.device import resolve_device
        cfg = load_config(args.config, args.overrides)
        processes = processes_for(cfg, resolve_device(args.device or cfg["device"]).type)
        if processes > 1:  # train.cpu_processes: this command again, as that many ranks
            argv = ["train", args.config, *args.overrides, *(["--device", args.device] if args.device else []),
                    *(["--no-progress"] if args.no_progress else []), *(["--debug"] if getattr(args, "debug", False) else [])]
            return launch(argv, processes)
        train(cfg, device=args.device, progress=not args.no_progress)
        return 0

    if args.verb == "generate":
        from onet.generation import generate
        from onet.utils.ranks import parse_shard
        cfg = load_config(args.config, args.overrides)
        for flag in ("samples", "interpolate"):
            if getattr(args, flag) is not None and getattr(args, flag) < 1:
                raise UsageError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
        summary = generate(cfg, device=args.device, input_dir=args.input, output_dir=args.output,
                           checkpoint=args.checkpoint, mesh_format=args.format, samples=args.samples,
                           interpolate=args.interpolate, encode=args.encode, between=args.between,
                           shard=parse_shard(args.shard) if args.shard else None,
                           overwrite=args.overwrite, progress=not args.no_progress)
        return summary.exit_code

    if args.verb == "eval":
        from onet.evaluation import run_eval
        if args.config and "=" in args.config and not Path(args.config).exists():
            # `onet eval --pred A --gt B key=value`: the optional CONFIG slot caught an override
            args.overrides = [args.config, *args.overrides]
            args.config = None
        if args.config is None and (args.pred is None or args.gt is None):
            raise UsageError("give a CONFIG, or both --pred and --gt for direct mesh-to-mesh evaluation")
        cfg = load_config(args.config, args.overrides) if args.config else default_config(args.overrides)
        if args.device:
            cfg["device"] = args.device  # the network passes (--sweep) run there; metrics run on the CPU
        return run_eval(cfg, args)

    if args.verb == "import-checkpoint":
        from onet.models.reference import import_reference_checkpoint
        cfg = load_config(args.config, args.overrides)
        result = import_reference_checkpoint(args.reference, cfg, args.out)
        print(f"imported {result.n_tensors} tensors ({result.n_parameters / 1e6:.1f}M parameters) of the reference "
              f"{result.family!r} model into {result.out_path}; use it with "
              f"`onet generate {args.config} --checkpoint {result.out_path}`")
        return 0

    if args.verb == "report":
        from onet.report import write_report
        summary = write_report(args.out_dir, data_dir=args.data, max_objects=args.max_objects, size=args.size,
                               progress=not args.no_progress)
        for note in summary.notes:
            print(f"note: {note}")
        print(f"wrote {summary.path} ({summary.n_gallery} objects in the gallery); open it in a browser")
        return 0

    if args.verb == "gan":
        from onet.gan import run_gan
        return run_gan(args)

    if args.verb == "compare":
        from onet.compare import run_compare
        names = args.names
        if names and len(names) == 1 and len(args.runs) > 1:  # also accept --names ONet,3D-R2N2,PSGN
            names = [n.strip() for n in names[0].split(",")]
        run_compare(args.runs, names=names, eval_input=args.eval_input, metrics=args.metrics,
                    per_class=args.per_class, fmt=args.format, output=args.output, chamfer_scale=args.chamfer_scale)
        return 0

    if args.verb == "demo":
        from onet.demo import run_demo
        return run_demo(out_dir=args.out, data_dir=args.data, config=args.config, overrides=args.overrides,
                        n_per_class=args.objects_per_class, device=args.device, progress=not args.no_progress)
    raise UsageError(f"unknown verb {args.verb}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may come before or after options (`onet train cfg --device cpu a.b=1`).
    args, extra = parser.parse_known_args(argv)
    stray = [x for x in extra if x.startswith("-") or "=" not in x or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    debug = getattr(args, "debug", False)
    with _sigterm_raises():
        return _main(args, debug)


@contextlib.contextmanager
def _sigterm_raises():
    """SIGTERM raises Terminated in the main thread for the length of the block (when nothing
    else handles it): a `kill` of the main process then stops worker processes too. Not in a
    torchrun rank, which torchrun stops with SIGTERM and then SIGKILL: a Python handler would
    wait for a blocking collective to return."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
            or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1):
        yield
        return

    def terminated(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _main(args, debug: bool) -> int:
    try:
        return _run(args)
    except (ConfigError, UsageError) as exc:
        if debug:
            traceback.print_exc()
        print(f"onet {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"onet {args.verb}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"onet {args.verb}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except Exception as exc:  # one clear line for users; --debug for developers
        if debug:
            traceback.print_exc()
        name = type(exc).__name__
        print(f"onet {args.verb}: error: {exc}" + ("" if name.endswith("Error") and str(exc) else f" ({name})"),
              file=sys.stderr)
        if not debug:
            print("(run with --debug for the full traceback)", file=sys.stderr)
        return 1


def entry() -> None:
    """The console entry (`onet ...`, `python -m onet ...`): main(), then exit with its code.

    A process started by torchrun (WORLD_SIZE > 1) leaves through os._exit once its output is
    flushed, after its process group was destroyed and every file was written and closed: left
    to interpreter finalisation, gloo's worker threads (held by DDP's reducer) now and then abort
    the finished process with "terminate called without an active exception" (SIGABRT), and
    torchrun then reports the whole run as failed.
    """
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
