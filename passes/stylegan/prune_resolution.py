"""``stylegan::prune_resolution``: cut the synthesis network to a smaller output resolution."""

from __future__ import annotations

import math
import re

import numpy as np

from graphsurgery.errors import GraphError, UsageError
from graphsurgery.ir.graph import Graph
from graphsurgery.ir.names import TensorRef
from graphsurgery.registry import Option, Pass, get_pass, register_pass
from graphsurgery.rewriter import Rewriter

from ._structure import (
    ImageOutput,
    constant_nodes,
    image_output,
    is_stylegan1,
    lod_constants,
    skip_images,
    stylegan2_architecture,
    torgb_outputs,
)


@register_pass("stylegan::prune_resolution")
class PruneResolution(Pass):
    """Cut the synthesis network to an R x R output and drop every layer above R.

    The new output is what the original graph computes at resolution R:

    * StyleGAN2, skip architecture: the running image ``y`` of scope ``RxR``
      (``y_R = upsample(y_{R/2}) + ToRGB_R(x_R)``; at 4x4 the first ToRGB output), found by
      walking the chain of up-sampled images down from the output.
    * StyleGAN (v1): the ``ToRGB_lod<k>`` output at R (``k = log2(full / R)``), a 1x1 conv to
      the image channels plus its bias. The linear structure computes every ToRGB; the
      recursive structure computes only the one its ``lod`` selects, so on a graph whose
      ``tf.cond`` nest is still there the pass sets ``lod = k`` and folds the control flow
      (as ``core::fold_switch_merge`` does), which leaves ``upscale(ToRGB_lod<k>, 2**k)``,
      then drops the final upscale. Once the structure has been folded for lod 0
      (``core::fold_switch_merge``; for the linear one ``core::simplify_arith`` removing
      the lerps with coefficient 0) the lower ToRGB layers are gone: run this pass right
      after ``core::strip_training``. StyleGAN2 graphs can be pruned at any point.
    * StyleGAN2 ``orig`` and ``resnet`` architectures have no image below the top
      resolution: a UsageError names the architecture.

    The declared output keeps its name: the node above the image (the ``images_out``
    identity, or a shape-agnostic tail such as an output transpose or uint8 conversion) is
    rewired to the new image; without one, an ``Identity`` with the old output's name is
    created. Everything only the higher resolutions used (their layers, ToRGBs, noise ops)
    is erased. ``resolution=0`` or the graph's own resolution changes nothing.

    Before::

        y4  = ToRGB(x4)                               [N, 3, 4, 4]
        y8  = Upsample(y4) + ToRGB(x8)                [N, 3, 8, 8]
        y16 = Upsample(y8) + ToRGB(x16)               [N, 3, 16, 16]
        images_out = Identity(y16)                    (declared output)

    After (resolution=8)::

        y4  = ToRGB(x4)
        y8  = Upsample(y4) + ToRGB(x8)
        images_out = Identity(y8)                     [N, 3, 8, 8]
    """

    resolution = Option(
        int, 0, "output size R (a power of two, 4..the graph's); 0 keeps the full resolution"
    )

    def run(self, graph: Graph, rw: Rewriter) -> None:
        res = self.resolution
        if res == 0:
            return
        if res < 4 or res & (res - 1):
            raise UsageError(
                f"{self.id}: resolution={res} must be 0 or a power of two of at least 4"
            )
        consts = constant_nodes(graph)
        image = _image(graph, consts, self.id)
        full = image.resolution
        if res > full:
            raise UsageError(
                f"{self.id}: resolution={res} is larger than the graph's output ({full}x{full})"
            )
        if res == full:
            return
        lod = int(round(math.log2(full // res)))
        lods = lod_constants(graph)
        if lods:
            self._fold_lod(graph, rw, lods, lod)
            consts = constant_nodes(graph)
            image = _image(graph, consts, self.id)
        target = self._find(graph, image, consts, res, lod)
        used = graph.ancestors(t.node for t in graph.outputs)
        _retarget(graph, rw, image, target)
        # Inputs only the dropped layers read (noise inputs) go too; inputs that were
        # unused already (``labels_in``) stay.
        still = graph.ancestors(t.node for t in graph.outputs)
        dropped = [t for t in graph.inputs if t.node in used and t.node not in still]
        if dropped:
            rw.set_graph_inputs([t for t in graph.inputs if t not in dropped])
            rw.erase_dead([t.node for t in dropped])

    def _fold_lod(self, graph: Graph, rw: Rewriter, lods: list[str], lod: int) -> None:
        """v1 recursive structure: select level ``lod`` and fold its ``tf.cond`` nest."""
        with rw.rule_scope("set_lod"):
            for name in lods:
                dtype = graph.const_value(name).dtype
                rw.set_attr(name, "value", np.asarray(lod, dtype=dtype))
        with rw.rule_scope("fold_switch_merge"):
            get_pass("core::fold_switch_merge")().run(graph, rw)  # through the registry

    def _find(self, graph: Graph, image: ImageOutput, consts: set[str], res: int,
              lod: int) -> TensorRef:
        images = skip_images(graph, image, consts)
        if res in images:
            return images[res]
        v1 = is_stylegan1(graph)
        live = graph.ancestors(t.node for t in graph.outputs)
        # A StyleGAN2 ToRGB is a 1x1 conv to the image channels too, but not the image at R.
        found = torgb_outputs(graph, image, consts, live).get(res, []) if v1 else []
        if len(found) > 1:
            scope = re.compile(rf"(^|/)ToRGB_lod{lod}(_\d+)?/")
            named = [t for t in found if scope.search(t.node)]
            found = named or found
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise GraphError(
                f"{self.id}: several ToRGB candidates at {res}x{res}: "
                + ", ".join(sorted(str(t) for t in found)))
        if v1:
            raise UsageError(
                f"{self.id}: the ToRGB_lod{lod} layer of {res}x{res} is not in this StyleGAN "
                f"graph (folding the progressive-growing structure for lod 0 removed the "
                f"lower-resolution ToRGB layers); run {self.id} before core::fold_switch_merge "
                f"and core::simplify_arith (right after core::strip_training)"
            )
        arch = stylegan2_architecture(graph, image, consts)
        if arch != "skip":
            raise UsageError(
                f"{self.id}: this StyleGAN2 graph has the '{arch}' architecture, which has no "
                f"image below its full resolution (only 'skip' has one per resolution); "
                f"cannot prune it to {res}x{res}"
            )
        raise UsageError(f"{self.id}: found no {res}x{res} image in this graph")


def _image(graph: Graph, consts: set[str], pass_id: str) -> ImageOutput:
    try:
        return image_output(graph, consts)
    except GraphError as e:
        raise UsageError(f"{pass_id}: {e}") from None


def _retarget(graph: Graph, rw: Rewriter, image: ImageOutput, new: TensorRef) -> None:
    """Make the declared image output compute ``new`` in place of ``image.top``, keeping the
    output's name, then erase what only the old image needed."""
    old_out = graph.outputs[image.index]
    dead = graph.ancestors([image.top.node]) | set(image.tail)
    # The tail is [declared output node, ..., node reading image.top]; each reads the next.
    links: list[tuple[str, int]] = []
    for i, name in enumerate(image.tail):
        below = image.tail[i + 1] if i + 1 < len(image.tail) else image.top.node
        node = graph.node(name)
        idx = next(j for j, t in enumerate(node.data_inputs) if t.node == below)
        links.append((name, idx))
    # Rewire the deepest tail node that is not an IdentityN (an IdentityN would keep its
    # other inputs alive); IdentityN nodes below it are bypassed.
    point = None
    for name, idx in reversed(links):
        if graph.node(name).op != "IdentityN":
            point = (name, idx)
            break
    if point is not None:
        name, idx = point
        rw.set_input(name, idx, new)
        for tail_node in image.tail:
            if tail_node not in graph:
                continue
            node = graph.node(tail_node)
            if "_output_shapes" in node.attr_names:
                rw.del_attr(tail_node, "_output_shapes")
            # A control dependency on a constant orders nothing; those on the old image's
            # weights (a SavedModel's captures) would keep the pruned layers alive.
            for dep in node.control_inputs:
                if dep in dead and graph.node(dep).op == "Const":
                    rw.remove_control_input(tail_node, dep)
        rw.erase_dead(dead)
        return
    outputs = list(graph.outputs)
    outputs[image.index] = new
    rw.set_outputs(outputs)
    rw.erase_dead(dead | {old_out.node})
    if old_out.node not in graph and old_out.port == 0:
        dtype = graph.dtype(new)
        ident = rw.add_node("Identity", [new], {"T": dtype}, name=old_out.node)
        outputs[image.index] = ident.output()
        rw.set_outputs(outputs)
