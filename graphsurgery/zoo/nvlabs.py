"""Rebuild the generators of NVlabs pickles from their weights with the zoo's builders.

:func:`graphsurgery.ir.pickle.read_pickle` reads a pickle as data; the rebuilders here turn
the recorded ``Network`` state into a frozen graph, never running the file's code:

* StyleGAN (v1) ``G_style`` -> :func:`stylegan1.build_stylegan1`;
* StyleGAN2 ``G_main`` with a ``G_synthesis_stylegan2`` component (skip, orig, resnet) ->
  :func:`stylegan2.build_gs`;
* StyleGAN2-ADA ``G_main`` with a ``G_synthesis`` component (skip; mixed precision,
  conv_clamp, labels) -> :func:`ada.build_ada`;
* ProGAN ``G_paper`` (recursive or linear, fused or not) -> :func:`progan.build_progan`.

Real snapshots store these short names (the original ``Network`` keeps the build function's
name without its module); the dotted names (``training.networks_stylegan2.G_main``) are
accepted too. StyleGAN2 and StyleGAN2-ADA both call theirs ``G_main``: the synthesis
component's build function tells them apart, or, where it is missing, data only (the
``static_kwargs``, the variable names, the ``build_module_src`` read as text, never run);
:func:`g_main_family`.

Architecture comes from ``static_kwargs`` (the original build function's defaults fill the
rest); every kwarg must be one the builder reproduces, with a value it supports, else the
error names it and lists what is supported. Variable names and shapes must match what the
builder creates, and every variable of the pickle must be used. The graph computes what
``Gs.get_output_for(latents, labels, is_validation=True)`` computes: truncation from
``truncation_psi_val``/``truncation_cutoff_val`` (none by default) unless ``psi``/``cutoff``
are given; noise from the pickle's stored ``noise<i>`` variables (``noise="stored"``), or
drawn at run time (``noise="random"``, ``randomize_noise=True``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from graphsurgery.errors import InputError, UsageError
from graphsurgery.ir.pickle import NetworkState, PickleOptions, register_rebuilder
from graphsurgery.zoo import BuiltModel

# kwarg -> ("cfg", field) | ("fixed", supported values) | ("ignore", None) (training only)
_Spec = dict[str, tuple[str, Any]]

_COMMON: _Spec = {
    "truncation_psi": ("ignore", None), "truncation_cutoff": ("ignore", None),
    "truncation_psi_val": ("ignore", None), "truncation_cutoff_val": ("ignore", None),
    "dlatent_avg_beta": ("ignore", None), "style_mixing_prob": ("ignore", None),
    "is_training": ("fixed", (False,)), "is_validation": ("ignore", None),
    "is_template_graph": ("ignore", None), "randomize_noise": ("ignore", None),
    "latent_size": ("cfg", "latent_size"), "label_size": ("fixed", (0,)),
    "dlatent_size": ("cfg", "dlatent_size"), "dlatent_broadcast": ("ignore", None),
    "mapping_layers": ("cfg", "mapping_layers"), "mapping_fmaps": ("cfg", "mapping_fmaps"),
    "mapping_lrmul": ("cfg", "mapping_lrmul"), "mapping_nonlinearity": ("fixed", ("lrelu",)),
    "normalize_latents": ("fixed", (True,)), "dtype": ("fixed", ("float32",)),
    "resolution": ("cfg", "resolution"), "fmap_base": ("cfg", "fmap_base"),
    "fmap_decay": ("cfg", "fmap_decay"), "fmap_max": ("cfg", "fmap_max"),
    "nonlinearity": ("fixed", ("lrelu",)), "force_clean_graph": ("ignore", None),
}
_V1: _Spec = {
    **_COMMON, "num_channels": ("fixed", (3,)), "use_wscale": ("fixed", (True,)),
    "use_styles": ("fixed", (True,)), "const_input_layer": ("fixed", (True,)),
    "use_noise": ("fixed", (True,)), "use_pixel_norm": ("fixed", (False,)),
    "use_instance_norm": ("fixed", (True,)), "blur_filter": ("fixed", ([1, 2, 1], (1, 2, 1))),
    "fused_scale": ("cfg", "use_fused_scale"), "structure": ("cfg", "structure"),
}
_V2: _Spec = {
    **_COMMON, "num_channels": ("cfg", "num_channels"), "fmap_min": ("cfg", "fmap_min"),
    "architecture": ("cfg", "architecture"), "resample_kernel": ("cfg", "resample_kernel"),
    "fused_modconv": ("cfg", "fused_modconv"), "impl": ("fixed", ("cuda", "ref")),
    "return_dlatents": ("fixed", (False,)),
    "mapping_func": ("fixed", ("G_mapping",)),
    "synthesis_func": ("fixed", ("G_synthesis_stylegan2",)),
}
# The original build functions' defaults where the zoo's configs differ from them.
_V1_DEFAULTS = {"explicit_mapping_gain": False, "structure": "recursive"}
# training.networks (ADA): G_mapping/G_synthesis defaults; mapping_fmaps=None means
# dlatent_size and label_fmaps=None latent_size (filled in by rebuild_ada_g_main).
_ADA_DEFAULTS = {"mapping_layers": 8, "num_fp16_res": 0, "conv_clamp": None,
                 "fused_modconv": False, "mapping_fmaps": None, "label_fmaps": None}
_ADA: _Spec = {
    **_COMMON, "num_channels": ("cfg", "num_channels"), "fmap_min": ("cfg", "fmap_min"),
    "label_size": ("cfg", "label_size"), "label_fmaps": ("cfg", "label_fmaps"),
    "architecture": ("fixed", ("skip",)), "resample_kernel": ("cfg", "resample_kernel"),
    "fused_modconv": ("cfg", "fused_modconv"), "num_fp16_res": ("cfg", "num_fp16_res"),
    "conv_clamp": ("cfg", "conv_clamp"), "fmap_const": ("fixed", (None,)),
    "use_noise": ("fixed", (True,)), "return_dlatents": ("fixed", (False,)),
    "mapping_func": ("fixed", ("G_mapping",)), "synthesis_func": ("fixed", ("G_synthesis",)),
}
# training.networks_progan.G_paper: every kwarg it reads (it ignores others; we refuse them).
_PROGAN: _Spec = {
    "resolution": ("cfg", "resolution"), "num_channels": ("cfg", "num_channels"),
    "label_size": ("cfg", "label_size"), "fmap_base": ("cfg", "fmap_base"),
    "fmap_decay": ("cfg", "fmap_decay"), "fmap_max": ("cfg", "fmap_max"),
    "latent_size": ("cfg", "latent_size"), "normalize_latents": ("fixed", (True,)),
    "use_wscale": ("fixed", (True,)), "use_pixelnorm": ("fixed", (True,)),
    "pixelnorm_epsilon": ("fixed", (1e-8,)), "use_leakyrelu": ("fixed", (True,)),
    "dtype": ("fixed", ("float32",)), "fused_scale": ("cfg", "fused_scale"),
    "structure": ("cfg", "structure"), "is_template_graph": ("ignore", None),
}
_PROGAN_DEFAULTS = {"num_channels": 1, "resolution": 32, "structure": None}
# kwargs whose value may be None (the build function's "use the default") or 0.
_NONE_OK = {"conv_clamp", "mapping_fmaps", "label_fmaps", "latent_size", "structure"}
_ZERO_OK = {"num_fp16_res", "label_size"}
_V1_RUNTIME_CUTOFF = 8  # G_style's truncation_cutoff default
# Build function names as real snapshots store them (short), then the dotted forms.
_V1_NAMES = ("G_style", "training.networks_stylegan.G_style")
_V2_NAMES = ("training.networks_stylegan2.G_main",)
_ADA_NAMES = ("training.networks.G_main",)
_G_MAIN_NAMES = ("G_main",)  # StyleGAN2's or ADA's: g_main_family picks
_PROGAN_NAMES = ("G_paper", "training.networks_progan.G_paper")


def _funcs(module: str, *names: str) -> set[str]:
    return {*names, *(f"{module}.{n}" for n in names)}


_V1_COMPONENT_FUNCS = {"mapping": _funcs("training.networks_stylegan", "G_mapping"),
                       "synthesis": _funcs("training.networks_stylegan", "G_synthesis")}
_V2_COMPONENT_FUNCS = {"mapping": _funcs("training.networks_stylegan2", "G_mapping"),
                       "synthesis": _funcs("training.networks_stylegan2",
                                           "G_synthesis_stylegan2")}
_ADA_COMPONENT_FUNCS = {"mapping": _funcs("training.networks", "G_mapping"),
                        "synthesis": _funcs("training.networks", "G_synthesis")}
_FAMILY_NAMES = {"stylegan1": "StyleGAN", "stylegan2": "StyleGAN2",
                 "stylegan2-ada": "StyleGAN2-ADA", "progan": "ProGAN"}


def _fail(source: str, net: NetworkState, what: str) -> InputError:
    return InputError(f"{source}: network {net.name!r} ({net.build_func_name}): {what}")


def _kwargs(net: NetworkState, spec: _Spec, source: str) -> dict[str, Any]:
    """Config fields from the static kwargs of the network and its components."""
    fields: dict[str, Any] = {}
    kwargs = dict(net.static_kwargs)
    for comp in net.components.values():
        kwargs.update({k: v for k, v in comp.static_kwargs.items() if k not in kwargs})
    for key, value in kwargs.items():
        if isinstance(value, np.generic):
            value = value.item()
        kind, arg = spec.get(key, (None, None))
        if kind is None:
            raise _fail(source, net, f"unknown kwarg {key}={value!r}; supported: "
                        f"{', '.join(sorted(spec))}")
        if kind == "fixed" and value not in arg:
            raise _fail(source, net, f"{key}={value!r} is not supported (supported: "
                        f"{' or '.join(repr(a) for a in arg)})")
        if kind == "cfg":
            fields[arg] = _checked(source, net, key, value)
    return fields


def _checked(source: str, net: NetworkState, key: str, value: Any) -> Any:
    """A kwarg value of a plain type and a sane size (the file is untrusted)."""
    if (value is None and key in _NONE_OK) or (
            key in _ZERO_OK and type(value) is int and value == 0):
        return value
    if isinstance(value, list | tuple):
        if len(value) > 16 or not all(isinstance(v, int) and not isinstance(v, bool)
                                      and 0 < v < 1000 for v in value):
            raise _fail(source, net, f"{key}={value!r} is not a short list of small ints")
        return tuple(value)
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float) and math.isfinite(value) and 0 < value <= 2**20:
        return value
    raise _fail(source, net, f"{key}={value!r} is not a supported value")


def _truncation(net: NetworkState, opts: PickleOptions, runtime_cutoff: int | None,
                ) -> tuple[float | None, int | None]:
    """(psi, cutoff) as ``get_output_for(is_validation=True)`` picks them, or the options."""
    kw = net.static_kwargs
    if opts.psi is not None:
        psi = opts.psi
        cutoff = opts.cutoff if opts.cutoff is not None else kw.get("truncation_cutoff",
                                                                    runtime_cutoff)
    else:
        psi, cutoff = kw.get("truncation_psi_val"), kw.get("truncation_cutoff_val")
        if opts.cutoff is not None:
            cutoff = opts.cutoff
    if psi is not None and not isinstance(psi, int | float | np.floating):
        raise UsageError(f"truncation psi {psi!r} is not a number")
    if psi is not None and float(psi) == 1:
        psi = None
    return (None if psi is None else float(psi)), (None if cutoff is None else int(cutoff))


def _check_components(net: NetworkState, source: str, funcs: dict[str, set[str]]) -> None:
    if sorted(net.components) != ["mapping", "synthesis"]:
        raise _fail(source, net, f"components {sorted(net.components)}, expected mapping "
                    "and synthesis")
    for key, comp in net.components.items():
        # a component with no build function name is taken to be the family's own
        if comp.build_func_name and comp.build_func_name not in funcs[key]:
            short = sorted(n for n in funcs[key] if "." not in n)
            raise _fail(source, net, f"component {key} is built by {comp.build_func_name} "
                        f"(supported: {', '.join(short)})")
        if comp.components:
            raise _fail(source, net, f"component {key} has components of its own")


def _build(build: Any, cfg: Any, values: dict[str, np.ndarray], net: NetworkState,
           source: str, optional: set[str]) -> BuiltModel:
    """Build with ``values``; every variable of the pickle must be one the graph used."""
    for name, value in values.items():
        if value.dtype.kind != "f":
            raise _fail(source, net, f"variable {name} is {value.dtype}, not floating point")
    try:
        model = build(cfg, values)
    except KeyError as exc:
        raise _fail(source, net, f"the pickle lacks variable {exc.args[0]}, which this "
                    "architecture needs") from None
    except ValueError as exc:
        raise _fail(source, net, str(exc)) from None
    except TypeError as exc:  # a kwarg of the wrong type (a float layer count, ...)
        raise _fail(source, net, f"its static_kwargs do not describe a network: {exc}") \
            from None
    used = set(model.meta["variables"])
    unused = sorted(set(values) - used - optional)
    if unused:
        raise _fail(source, net, f"variable {unused[0]} is not used by the rebuilt network "
                    f"({len(unused)} unused); its static_kwargs do not describe it")
    return model


def _cut(model: BuiltModel, network: str, meta_key_in: str, meta_key_out: str) -> BuiltModel:
    """The mapping (latents -> dlatents) or synthesis (dlatents -> images) component."""
    from graphsurgery.ir import proto
    from graphsurgery.zoo._lazy import v1

    gd = model.graph_def
    if isinstance(gd, proto.GraphDef):
        gd = proto.to_tf(gd)
    if network == "mapping":
        out = model.meta[meta_key_out].split(":")[0]
        gd = v1.graph_util.extract_sub_graph(gd, [out, "labels_in"])
        return BuiltModel(inputs=["latents_in:0", "labels_in:0"], outputs=[f"{out}:0"],
                          graph_def=gd, meta={**model.meta, "network": "mapping"})
    cut = model.meta[meta_key_in].split(":")[0]
    out_gd = type(gd)()
    out_gd.versions.CopyFrom(gd.versions)
    for node in gd.node:
        new = out_gd.node.add()
        if node.name == cut:
            new.name, new.op = cut, "Placeholder"
            new.attr["dtype"].type = node.attr["T"].type
            shape = model.meta["num_layers"], model.meta["dlatent_size"]
            dims = new.attr["shape"].shape.dim
            dims.add().size = -1
            for d in shape:
                dims.add().size = d
        else:
            new.CopyFrom(node)
    out_gd = v1.graph_util.extract_sub_graph(out_gd, ["images_out"])
    return BuiltModel(inputs=[f"{cut}:0"], outputs=["images_out:0"], graph_def=out_gd,
                      meta={**model.meta, "network": "synthesis"})


def _finish(model: BuiltModel, net: NetworkState, opts: PickleOptions, psi: float | None,
            cutoff: int | None) -> BuiltModel:
    model.meta.update(pickle_network=net.name, build_func_name=net.build_func_name,
                      pickle_family=_FAMILY_NAMES[model.meta["kind"]],
                      noise=opts.noise, truncation_psi=psi, truncation_cutoff=cutoff)
    if opts.network in ("mapping", "synthesis"):
        keys = {"stylegan1": ("dlatents_tensor", "mapping_output"),
                "stylegan2": ("dlatents", "mapping_output"),
                "stylegan2-ada": ("dlatents", "mapping_output")}[model.meta["kind"]]
        return _cut(model, opts.network, *keys)
    return model


def _rebuild(net: NetworkState, opts: PickleOptions, source: str, config: Any, build: Any,
             fields: dict[str, Any], values: dict[str, np.ndarray], psi: float | None,
             cutoff: int | None, optional: set[str] | None = None, **fixed: Any) -> BuiltModel:
    """Build a mapping + synthesis generator (v1, v2, ADA) from ``values``: the config from
    ``fields`` (and ``fixed``), truncation and the noise mode, checked with its
    ``validate()`` where it has one; with random noise the stored noise variables are not
    needed. Returns the finished model (:func:`_finish`)."""
    optional = set(optional or ())
    if opts.noise == "random":  # drawn at run time: the stored noise maps go unused
        optional |= {n for n in values if n.startswith("G_synthesis/noise")}
    try:
        cfg = config(**fields, **fixed, truncation_psi=psi, truncation_cutoff=cutoff,
                     randomize_noise=opts.noise == "random", seed=opts.seed)
        if hasattr(cfg, "validate"):
            cfg.validate()
    except (TypeError, ValueError) as exc:
        raise _fail(source, net, str(exc)) from None
    model = _build(build, cfg, values, net, source, optional)
    return _finish(model, net, opts, psi, cutoff)


@register_rebuilder(_V1_NAMES, "StyleGAN")
def rebuild_g_style(net: NetworkState, opts: PickleOptions, source: str) -> BuiltModel:
    """StyleGAN (v1) ``G_style`` from its weights."""
    from graphsurgery.zoo.stylegan1 import StyleGAN1Config, build_stylegan1

    _check_components(net, source, _V1_COMPONENT_FUNCS)
    fields = {**_V1_DEFAULTS, **_kwargs(net, _V1, source)}
    if fields.get("structure") == "auto":
        fields["structure"] = "recursive"  # what 'auto' picks for an evaluation graph
    psi, cutoff = _truncation(net, opts, _V1_RUNTIME_CUTOFF)
    if cutoff is not None and cutoff <= 0:
        cutoff = None
    return _rebuild(net, opts, source, StyleGAN1Config, build_stylegan1, fields,
                    net.all_variables(), psi, cutoff)


@register_rebuilder(_V2_NAMES, "StyleGAN2")
def rebuild_g_main(net: NetworkState, opts: PickleOptions, source: str) -> BuiltModel:
    """StyleGAN2 ``G_main`` (skip, orig or resnet) from its weights."""
    from graphsurgery.zoo.stylegan2 import StyleGAN2Config, build_gs

    _check_components(net, source, _V2_COMPONENT_FUNCS)
    fields = _kwargs(net, _V2, source)
    psi, cutoff = _truncation(net, opts, None)
    values = net.all_variables()
    # G_main's own 'lod' only feeds a synthesis network that has one; G_synthesis_stylegan2
    # has none, so it is checked (a scalar) and has no effect.
    optional = set()
    if "lod" in values:
        if values["lod"].shape != ():
            raise _fail(source, net, f"variable lod has shape {list(values['lod'].shape)}, "
                        "expected a scalar")
        optional.add("lod")
    return _rebuild(net, opts, source, StyleGAN2Config, build_gs, fields, values, psi, cutoff,
                    optional, impl="ref")


@register_rebuilder(_ADA_NAMES, "StyleGAN2-ADA")
def rebuild_ada_g_main(net: NetworkState, opts: PickleOptions, source: str) -> BuiltModel:
    """StyleGAN2-ADA ``training.networks.G_main`` (skip) from its weights: float16 in the
    ``num_fp16_res`` highest resolutions, ``conv_clamp``, conditional label embedding."""
    from graphsurgery.zoo.ada import ADAConfig, build_ada

    _check_components(net, source, _ADA_COMPONENT_FUNCS)
    fields = {**_ADA_DEFAULTS, **_kwargs(net, _ADA, source)}
    if fields["mapping_fmaps"] is None:
        fields["mapping_fmaps"] = fields.get("dlatent_size", 512)
    if fields["label_fmaps"] is None:
        fields["label_fmaps"] = fields.get("latent_size", 512)
    psi, cutoff = _truncation(net, opts, None)
    return _rebuild(net, opts, source, ADAConfig, build_ada, fields, net.all_variables(), psi,
                    cutoff, impl="ref")


@register_rebuilder(_PROGAN_NAMES, "ProGAN")
def rebuild_g_paper(net: NetworkState, opts: PickleOptions, source: str) -> BuiltModel:
    """ProGAN ``G_paper`` from its weights: no mapping network, truncation or noise; the
    stored ``lod`` picks the level of detail as in the original."""
    from graphsurgery.zoo.progan import ProGANConfig, build_progan

    if net.components:
        raise _fail(source, net, f"components {sorted(net.components)}; G_paper has none")
    if opts.network in ("mapping", "synthesis"):
        raise UsageError(f"--network {opts.network}: ProGAN's G_paper has no mapping or "
                         "synthesis network (choose Gs or G)")
    if opts.psi is not None or opts.cutoff is not None:
        raise UsageError("--psi/--cutoff: ProGAN's G_paper has no truncation")
    fields = {**_PROGAN_DEFAULTS, **_kwargs(net, _PROGAN, source)}
    if fields["structure"] is None:
        fields["structure"] = "recursive"  # what None picks for an evaluation graph
    try:
        cfg = ProGANConfig(**fields, seed=opts.seed)
    except (TypeError, ValueError) as exc:
        raise _fail(source, net, str(exc)) from None
    model = _build(build_progan, cfg, net.all_variables(), net, source, set())
    model.meta.update(pickle_network=net.name, build_func_name=net.build_func_name,
                      pickle_family="ProGAN", noise="no", truncation_psi=None,
                      truncation_cutoff=None)
    return model


# Data that only one G_main family's networks hold: kwargs, variables (-> family), sources.
_ADA_ONLY_KWARGS = ("num_fp16_res", "conv_clamp", "label_fmaps", "fmap_const")
_G_MAIN_VARIABLES = {"lod": "stylegan2", "G_mapping/LabelConcat/weight": "stylegan2",
                     "G_mapping/LabelEmbed/weight": "stylegan2-ada"}
_G_MAIN_SOURCES = {"stylegan2": re.compile(r"^def G_synthesis_stylegan2\(", re.MULTILINE),
                   "stylegan2-ada": re.compile(r"^def G_synthesis\(", re.MULTILINE)}


def g_main_family(net: NetworkState, source: str) -> str:
    """``"stylegan2"`` or ``"stylegan2-ada"``: which ``G_main`` a network with the short
    name is. The synthesis component's build function decides (``G_synthesis_stylegan2``:
    StyleGAN2, ``G_synthesis``: ADA; any other is an error); where it is missing, data only:
    ADA-only ``static_kwargs`` (``num_fp16_res``, ``conv_clamp``...), ``synthesis_func``,
    variables only one family creates (StyleGAN2's ``lod``), and which synthesis function
    ``build_module_src`` defines (read as text, never run). No evidence or evidence for both
    is an error."""
    synthesis = net.components.get("synthesis")
    func = synthesis.build_func_name if synthesis is not None else ""
    if func:
        for kind, funcs in (("stylegan2", _V2_COMPONENT_FUNCS),
                            ("stylegan2-ada", _ADA_COMPONENT_FUNCS)):
            if func in funcs["synthesis"]:
                return kind
        raise _fail(source, net, f"component synthesis is built by {func}, neither "
                    "StyleGAN2's G_synthesis_stylegan2 nor StyleGAN2-ADA's G_synthesis")
    found: dict[str, list[str]] = {"stylegan2": [], "stylegan2-ada": []}
    kwargs = {k: v for n in (net, *net.components.values()) for k, v in n.static_kwargs.items()}
    found["stylegan2-ada"] += [f"kwarg {k}" for k in _ADA_ONLY_KWARGS if k in kwargs]
    func_kwarg = {"G_synthesis_stylegan2": "stylegan2", "G_synthesis": "stylegan2-ada"}
    synthesis_func = kwargs.get("synthesis_func")
    if isinstance(synthesis_func, str) and synthesis_func in func_kwarg:
        found[func_kwarg[synthesis_func]].append(f"kwarg synthesis_func={synthesis_func}")
    names = net.all_variables()
    for name, kind in _G_MAIN_VARIABLES.items():
        if name in names:
            found[kind].append(f"variable {name}")
    texts = [n.build_module_src for n in (net, *net.components.values())]
    for kind, pattern in _G_MAIN_SOURCES.items():
        if any(pattern.search(t) for t in texts):
            found[kind].append("its build_module_src")
    kinds = [k for k, why in found.items() if why]
    if len(kinds) == 1:
        return kinds[0]
    what = ("no data tells them apart (no num_fp16_res/conv_clamp kwarg, lod variable or "
            "synthesis function in build_module_src)" if not kinds else
            f"its data points both ways: StyleGAN2 ({', '.join(found['stylegan2'])}), "
            f"StyleGAN2-ADA ({', '.join(found['stylegan2-ada'])})")
    raise _fail(source, net, f"cannot tell StyleGAN2's G_main from StyleGAN2-ADA's: it has no "
                f"synthesis component build function, and {what}")


@register_rebuilder(_G_MAIN_NAMES, "StyleGAN2 or StyleGAN2-ADA")
def rebuild_g_main_short(net: NetworkState, opts: PickleOptions, source: str) -> BuiltModel:
    """``G_main`` as real snapshots name it: StyleGAN2's or StyleGAN2-ADA's
    (:func:`g_main_family`), rebuilt by :func:`rebuild_g_main` or :func:`rebuild_ada_g_main`."""
    if g_main_family(net, source) == "stylegan2":
        return rebuild_g_main(net, opts, source)
    return rebuild_ada_g_main(net, opts, source)


__all__ = ["g_main_family", "rebuild_ada_g_main", "rebuild_g_main", "rebuild_g_main_short",
           "rebuild_g_paper", "rebuild_g_style"]


def import_pickle(path: str | Path, out: str | Path, options: PickleOptions | None = None,
                  ) -> tuple[Path, BuiltModel]:
    """``graphsurgery import``: rebuild the generator of the pickle at ``path`` and write it
    as a frozen GraphDef to ``out`` (written whole or not at all; never over the input)."""
    from graphsurgery.ir.io import load, save
    from graphsurgery.ir.pickle import load_pickle

    path, out = Path(path), Path(out)
    if out.suffix != ".pb":
        raise UsageError(f"-o {out}: write a frozen GraphDef .pb")
    if out.exists() and out.resolve() == path.resolve():
        raise UsageError(f"-o {out}: is the input pickle")
    model = load_pickle(path, options)
    graph = load(model.graph_def, inputs=model.inputs, outputs=model.outputs)
    return save(graph, out), model


def cmd_import(args: Any) -> int:
    """The ``import`` subcommand (argument parsing lives in :mod:`graphsurgery.cli`)."""
    from graphsurgery.ir.pickle_trusted import trust_options

    opts = PickleOptions(network=args.network, psi=args.psi, cutoff=args.cutoff,
                         noise=args.noise, seed=args.seed, **trust_options(args))
    out, model = import_pickle(args.model, args.output, opts)
    m = model.meta
    trunc = ("no truncation" if m.get("truncation_psi") is None
             else f"truncation psi {m['truncation_psi']}, cutoff {m.get('truncation_cutoff')}")
    family = f", {m['pickle_family']}" if m.get("pickle_family") else ""
    print(f"{out}: {m.get('pickle_network')} ({m.get('build_func_name')}{family}, network "
          f"{opts.network}, {m.get('resolution')} px, {trunc}, {m.get('noise', opts.noise)} "
          "noise; inputs "
          f"{', '.join(model.inputs)}; outputs {', '.join(model.outputs)})"
          + ("; frozen by RUNNING the pickle's code (--trust-pickle-code)"
             if m.get("pickle_code_run") else ""))
    return 0


def add_import_parser(sub: Any, parents: list[Any]) -> None:
    """Register ``graphsurgery import SNAPSHOT.pkl -o FROZEN.pb`` on the CLI's subparsers."""
    from graphsurgery.ir.pickle import NETWORKS, NOISE_MODES

    p = sub.add_parser("import", parents=parents, help="rebuild the generator of an NVlabs "
                       "pickle as a frozen GraphDef, without running the pickle's code "
                       "(unless --trust-pickle-code)")
    p.add_argument("model", metavar="SNAPSHOT.pkl",
                   help="an NVlabs StyleGAN, StyleGAN2, StyleGAN2-ADA or ProGAN pickle")
    p.add_argument("-o", "--output", required=True, metavar="FROZEN.pb",
                   help="the frozen GraphDef to write")
    p.add_argument("--network", choices=NETWORKS, default="Gs",
                   help="Gs (default) or G of a (G, D, Gs) tuple, or a component of Gs")
    p.add_argument("--psi", type=float, default=None,
                   help="truncation psi (default: the network's validation setting, "
                        "usually none)")
    p.add_argument("--cutoff", type=int, default=None,
                   help="truncate only the first N dlatent layers")
    p.add_argument("--noise", choices=NOISE_MODES, default="stored",
                   help="stored: the pickle's noise variables, frozen (default); random: "
                        "drawn at run time like randomize_noise=True")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    from graphsurgery.ir.pickle_trusted import add_trust_arguments

    add_trust_arguments(p)  # --trust-pickle-code: runs the file's code, in a subprocess
    p.set_defaults(func=_cmd_import_checked)


def _cmd_import_checked(args: Any) -> int:
    from graphsurgery.ir.pickle_trusted import trust_options

    trust_options(args)  # --pickle-code-path without --trust-pickle-code is refused
    return cmd_import(args)
