"""The ``template`` teacher backend: deterministic, offline, label-only texts written from the phrase pools in
``prompts/v1/template.yaml`` (model ``template-v1``). The demo and the tests teach with it, without any model,
and every output line says so (backend ``template``)."""

from __future__ import annotations

import random
import re
from typing import Any

from plates.chat_client import Completion
from plates.labels import (
    PLATE_COLOUR, PLATE_COUNTRY, PLATE_FIELDS, PLATE_GROUP, PLATE_LAYERS, PLATE_NUMBER, PLATE_PROVINCE, PLATE_USAGE,
    SLUGS, UNKNOWN, VEHICLE_BRAND, VEHICLE_COLOUR, VEHICLE_FIELDS, VEHICLE_GROUP, VEHICLE_ORIENTATION, VEHICLE_TYPE,
    abbreviation_for_province, plate_key,
)
from plates.teaching.backends import TeacherBackend
from plates.teaching.gate import OK, check
from plates.teaching.prompts import Prompts, Request, digest, render


class TemplateBackend(TeacherBackend):
    """Label-only, deterministic texts from the phrase pools in ``template.yaml``; never looks at the image."""

    name = "template"
    help = "offline label-only texts, marked as such (the default; the demo and tests use it)"
    counts_tokens = False

    def __init__(self, prompts: Prompts):
        self.pools = prompts.template
        self.model = str(self.pools["model"])

    @classmethod
    def from_options(cls, options: TeacherBackend.Options, prompts: Prompts) -> TemplateBackend:
        return cls(prompts)

    @property
    def fingerprint(self) -> str:
        return f"{self.model}:{digest(self.pools)}"

    def complete(self, request: Request) -> Completion:
        rng = random.Random(request.key)
        writer = getattr(self, f"_{request.mode}")
        text = re.sub(r"\s+\n|\n\s+", "\n", writer(request, rng)).strip()
        return Completion(text=text)

    def _pick(self, rng: random.Random, *path: str) -> str:
        node: Any = self.pools
        for name in path:
            node = node[name]
        return rng.choice(node) if isinstance(node, list) else str(node)

    def _vehicle_values(self, labels: dict[str, Any], rng: random.Random) -> dict[str, str]:
        """Every vehicle field as a ``{slug}`` placeholder (slugs from the field table), plus the short names
        template.yaml uses, worded for unknown values."""
        vehicle = labels.get(VEHICLE_GROUP) or {}
        values = {SLUGS[f]: vehicle.get(f, UNKNOWN) for f in VEHICLE_FIELDS}
        colour, brand, kind = values["vehicle_colour"], values["vehicle_brand"], values["vehicle_type"]
        pool = self.pools["orientation"]
        values.update({
            "colour": colour if colour != UNKNOWN else "颜色难辨",
            "colour_adj": f"{colour}的" if colour != UNKNOWN else "",
            "brand": brand if brand != UNKNOWN else "",
            "type": kind if kind != UNKNOWN else "车辆",
            "orientation": rng.choice(pool.get(values["vehicle_orientation"]) or pool[UNKNOWN]),
        })
        return values

    def _plate_sentence(self, plate: dict[str, str], prefix: str, rng: random.Random) -> str:
        clauses = self.pools["plate_clauses"]
        values = {SLUGS[f]: plate.get(f, UNKNOWN) for f in PLATE_FIELDS}  # every plate field as {slug}
        number, colour = values["plate_number"], values["plate_colour"]
        layers, usage = values["plate_layers"], values["plate_usage"]
        origin = "".join(v for v in (values["plate_country"], values["plate_province"]) if v != UNKNOWN)
        values.update(number=number, layers=layers, usage=usage, origin=origin)  # template.yaml's short names
        parts = [rng.choice(clauses["number"] if number != UNKNOWN else clauses["number_unknown"])]
        if origin:
            parts.append(rng.choice(clauses["origin"]))
        if colour != UNKNOWN and layers != UNKNOWN:
            parts.append(rng.choice(clauses["look"]))
        elif colour != UNKNOWN:
            parts.append(rng.choice(clauses["look_colour_only"]))
        elif layers != UNKNOWN:
            parts.append(rng.choice(clauses["look_layers_only"]))
        if usage != UNKNOWN:
            parts.append(rng.choice(clauses["usage"]))
        return prefix + render(",".join(parts), values) + "。"

    def _plates_text(self, labels: dict[str, Any], rng: random.Random) -> str:
        plates = labels.get(PLATE_GROUP) or []
        if not plates:
            return self._pick(rng, "no_plate")
        if len(plates) == 1:
            return self._plate_sentence(plates[0], self._pick(rng, "plate_prefix_one"), rng)
        return "".join(self._plate_sentence(p, render(self._pick(rng, "plate_prefix_many"), {"index": i}) + ",", rng)
                       for i, p in enumerate(plates, 1))

    def _describe(self, request: Request, rng: random.Random) -> str:
        values = self._vehicle_values(request.labels, rng)
        text = render(self._pick(rng, "vehicle"), values) + self._plates_text(request.labels, rng)
        return text + self._pick(rng, "closing")

    def _caption(self, request: Request, rng: random.Random) -> str:
        values = self._vehicle_values(request.labels, rng)
        return render(self._pick(rng, "caption"), values) + self._plates_text(request.labels, rng)

    def _fuse(self, request: Request, rng: random.Random) -> str:
        describe = request.inputs.get("describe", "").strip()
        vehicle = request.labels.get(VEHICLE_GROUP) or {}
        known = [plate_key(p.get(PLATE_NUMBER, UNKNOWN)) for p in request.labels.get(PLATE_GROUP) or []]
        known += [vehicle.get(f, UNKNOWN) for f in (VEHICLE_BRAND, VEHICLE_TYPE)]
        known = [k for k in known if k and k != UNKNOWN]

        def adds_detail(sentence: str) -> bool:
            """A caption sentence worth keeping: says nothing the description already covers, contradicts nothing."""
            squeezed = plate_key(sentence)
            return (not any(k in squeezed or k in sentence for k in known) and sentence.strip() not in describe
                    and check(sentence, {VEHICLE_GROUP: vehicle, PLATE_GROUP: []}).verdict == OK)

        sentences = re.findall(r"[^。!?!?\n]+[。!?!?]?", request.inputs.get("caption", ""))
        return describe + "".join(s.strip() for s in sentences if s.strip() and adds_detail(s))

    def _reason(self, request: Request, rng: random.Random) -> str:
        pools = self.pools["reason"]
        vehicle_values = self._vehicle_values(request.labels, rng)
        vehicle = request.labels.get(VEHICLE_GROUP) or {}
        parts = []
        for plate in request.labels.get(PLATE_GROUP) or []:
            number, province = plate.get(PLATE_NUMBER, UNKNOWN), plate.get(PLATE_PROVINCE, UNKNOWN)
            abbr = abbreviation_for_province(province) if province != UNKNOWN else None
            origin = "".join(v for v in (plate.get(PLATE_COUNTRY, UNKNOWN), province) if v != UNKNOWN)
            values = {"number": number, "abbr": abbr, "province": province, "origin": origin or "未知地区",
                      "plate_colour": plate.get(PLATE_COLOUR, UNKNOWN), "layers": plate.get(PLATE_LAYERS, UNKNOWN),
                      "usage": plate.get(PLATE_USAGE, UNKNOWN)}
            if number != UNKNOWN and abbr and number.startswith(abbr):
                parts.append(render(rng.choice(pools["plate"]), values))
            elif number != UNKNOWN:
                parts.append(render(rng.choice(pools["plate_foreign"]), values))
            if UNKNOWN not in (values["plate_colour"], values["layers"], values["usage"]):
                parts.append(render(rng.choice(pools["look"]), values))
        if vehicle.get(VEHICLE_BRAND, UNKNOWN) != UNKNOWN:
            parts.append(render(rng.choice(pools["brand"]), vehicle_values))
        if UNKNOWN not in (vehicle.get(VEHICLE_COLOUR, UNKNOWN), vehicle.get(VEHICLE_TYPE, UNKNOWN)):
            parts.append(render(rng.choice(pools["vehicle"]), vehicle_values))
        side = rng.choice(pools["orientation"].get(vehicle.get(VEHICLE_ORIENTATION, UNKNOWN)) or [""])
        if side:
            parts.append(side)
        return ";".join(parts) + "。" if parts else "图中信息有限,依据标注作答。"
