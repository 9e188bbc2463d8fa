"""The instance catalogue: coverage of HyperPod's types, hardware facts, allocatable, prices, lookups."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import botocore.session
import pytest

from hpscaler.catalogue import (
    Catalogue,
    InstanceSpec,
    PriceOverride,
    UnknownInstanceType,
    _generate,
    load_catalogue,
)
from hpscaler.model import (
    LABEL_ARCH,
    LABEL_INSTANCE_CPU,
    LABEL_INSTANCE_FAMILY,
    LABEL_INSTANCE_GPU_COUNT,
    LABEL_INSTANCE_GPU_NAME,
    LABEL_INSTANCE_MEMORY,
    LABEL_INSTANCE_TYPE,
    LABEL_OS,
    CapacityType,
)
from hpscaler.quantity import CPU, EFA, EPHEMERAL_STORAGE, MEMORY, NEURON, NVIDIA_GPU, PODS

MIB = 2**20
GIB = 2**30
PACKAGED_JSON = Path(_generate.__file__).parent / "data" / "instance_types.json"


def hyperpod_enum() -> set[str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return set(model.shape_for("ClusterInstanceType").enum)


def spec(name: str = "ml.test.xlarge", **changes: object) -> InstanceSpec:
    base = InstanceSpec(
        name=name,
        family="test",
        vcpu=4,
        memory_mib=16384,
        gpus=0,
        gpu_name="",
        gpu_memory_mib=0,
        neuron_devices=0,
        efa=0,
        max_pods=58,
        arch="amd64",
        on_demand_price=1.0,
        spot_price=0.35,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --- coverage ---


def test_catalogue_covers_exactly_the_hyperpod_enum() -> None:
    assert set(load_catalogue().names()) == hyperpod_enum()


def test_load_catalogue_is_cached() -> None:
    assert load_catalogue() is load_catalogue()


def test_names_are_sorted_and_match_iteration() -> None:
    catalogue = load_catalogue()
    assert catalogue.names() == tuple(sorted(catalogue.names()))
    assert tuple(s.name for s in catalogue) == catalogue.names()
    assert len(catalogue) == len(catalogue.names()) == len(hyperpod_enum())


@pytest.mark.parametrize("name", sorted(hyperpod_enum()))
def test_every_type_is_consistent(name: str) -> None:
    catalogue = load_catalogue()
    assert name in catalogue
    s = catalogue.get(name)
    assert s.name == name
    assert name == f"ml.{s.family}.{name.rsplit('.', 1)[1]}"
    assert 0 < s.spot_price < s.on_demand_price
    assert s.arch in ("amd64", "arm64")
    assert 0 < s.max_pods <= (110 if s.vcpu <= 30 else 250)
    assert (s.gpus > 0) == bool(s.gpu_name) == (s.gpu_memory_mib > 0)
    capacity, allocatable = s.capacity(), s.allocatable()
    assert capacity.keys() == allocatable.keys()
    assert allocatable[CPU] < capacity[CPU]
    assert allocatable[MEMORY] < capacity[MEMORY]
    assert allocatable[EPHEMERAL_STORAGE] < capacity[EPHEMERAL_STORAGE]
    assert all(0 < allocatable[k] <= capacity[k] for k in capacity)


def test_contains_rejects_non_strings_and_unknown_names() -> None:
    catalogue = load_catalogue()
    assert "ml.c5.2xlarge" in catalogue
    assert "c5.2xlarge" not in catalogue
    assert 42 not in catalogue
    assert None not in catalogue


# --- hardware facts of well-known types ---


def test_c5_2xlarge_facts() -> None:
    s = load_catalogue().get("ml.c5.2xlarge")
    assert (s.family, s.vcpu, s.memory_mib, s.arch) == ("c5", 8, 16 * 1024, "amd64")
    assert (s.gpus, s.neuron_devices, s.efa) == (0, 0, 0)
    assert s.max_pods == 58  # 4 ENIs x (15 IPv4 - 1) + 2


def test_p4d_24xlarge_has_8_a100_and_4_efa() -> None:
    s = load_catalogue().get("ml.p4d.24xlarge")
    assert (s.gpus, s.gpu_name, s.gpu_memory_mib, s.efa, s.vcpu) == (8, "a100", 40960, 4, 96)


def test_p5_48xlarge_has_8_h100_and_32_efa() -> None:
    s = load_catalogue().get("ml.p5.48xlarge")
    assert (s.gpus, s.gpu_name, s.gpu_memory_mib, s.efa, s.vcpu) == (8, "h100", 81920, 32, 192)
    assert s.memory_mib == 2048 * 1024


def test_g5_xlarge_has_one_a10g() -> None:
    s = load_catalogue().get("ml.g5.xlarge")
    assert (s.gpus, s.gpu_name, s.vcpu, s.memory_mib, s.efa) == (1, "a10g", 4, 16 * 1024, 0)


def test_trn1_32xlarge_has_16_neuron_devices_and_8_efa() -> None:
    s = load_catalogue().get("ml.trn1.32xlarge")
    assert (s.neuron_devices, s.efa, s.gpus, s.vcpu) == (16, 8, 0, 128)
    assert s.capacity()[NEURON] == 16
    assert NVIDIA_GPU not in s.capacity()


def test_graviton_types_are_arm64() -> None:
    catalogue = load_catalogue()
    assert catalogue.get("ml.c7g.medium").arch == "arm64"
    assert catalogue.get("ml.m8g.48xlarge").arch == "arm64"
    assert catalogue.get("ml.m7i.large").arch == "amd64"


# --- capacity and allocatable, computed by hand ---


def test_c5_2xlarge_capacity_and_allocatable() -> None:
    s = load_catalogue().get("ml.c5.2xlarge")
    assert s.capacity() == {
        CPU: 8000,
        MEMORY: 16384 * MIB,
        EPHEMERAL_STORAGE: 100 * GIB,
        PODS: 58,
    }
    # CPU reserved: 60 (core 1) + 10 (core 2) + 5 + 5 (cores 3-4) + 4 x 2.5 (cores 5-8) = 90m.
    # Memory reserved: 11 x 58 + 255 = 893 MiB kube-reserved + 100 MiB eviction = 993 MiB.
    # Ephemeral: 1 GiB kube-reserved + 10% of 100 GiB eviction = 11 GiB.
    assert s.allocatable() == {
        CPU: 7910,
        MEMORY: 15391 * MIB,
        EPHEMERAL_STORAGE: 89 * GIB,
        PODS: 58,
    }


def test_p5_48xlarge_capacity_and_allocatable() -> None:
    s = load_catalogue().get("ml.p5.48xlarge")
    assert s.capacity() == {
        CPU: 192_000,
        MEMORY: 2_097_152 * MIB,
        EPHEMERAL_STORAGE: 100 * GIB,
        PODS: 100,
        NVIDIA_GPU: 8,
        EFA: 32,
    }
    # CPU reserved: 60 + 10 + 5 + 5 + 188 x 2.5 = 550m.
    # Memory reserved: 11 x 100 + 255 + 100 = 1455 MiB.
    assert s.allocatable() == {
        CPU: 191_450,
        MEMORY: 2_095_697 * MIB,
        EPHEMERAL_STORAGE: 89 * GIB,
        PODS: 100,
        NVIDIA_GPU: 8,
        EFA: 32,
    }


@pytest.mark.parametrize(
    ("vcpu", "reserved_millicores"),
    [(1, 60), (2, 70), (3, 75), (4, 80), (5, 82), (6, 85), (16, 110), (96, 310)],
)
def test_cpu_reservation_rounds_the_reserve_down(vcpu: int, reserved_millicores: int) -> None:
    # 5 cores reserve 82.5m; the half millicore is dropped from the reservation.
    assert spec(vcpu=vcpu).allocatable()[CPU] == vcpu * 1000 - reserved_millicores


def test_device_resources_appear_only_when_present() -> None:
    plain = spec()
    assert set(plain.capacity()) == {CPU, MEMORY, EPHEMERAL_STORAGE, PODS}
    loaded = spec(gpus=2, gpu_name="l4", gpu_memory_mib=22888, neuron_devices=1, efa=3)
    assert loaded.allocatable()[NVIDIA_GPU] == 2
    assert loaded.allocatable()[NEURON] == 1
    assert loaded.allocatable()[EFA] == 3


# --- labels and prices ---


def test_labels_of_a_gpu_type() -> None:
    assert load_catalogue().get("ml.g5.12xlarge").labels() == {
        LABEL_INSTANCE_TYPE: "ml.g5.12xlarge",
        LABEL_ARCH: "amd64",
        LABEL_OS: "linux",
        LABEL_INSTANCE_FAMILY: "g5",
        LABEL_INSTANCE_CPU: "48",
        LABEL_INSTANCE_MEMORY: "196608",
        LABEL_INSTANCE_GPU_COUNT: "4",
        LABEL_INSTANCE_GPU_NAME: "a10g",
    }


def test_labels_of_a_cpu_type_have_no_gpu_labels() -> None:
    labels = load_catalogue().get("ml.m7g.large").labels()
    assert labels[LABEL_ARCH] == "arm64"
    assert labels[LABEL_INSTANCE_MEMORY] == "8192"
    assert LABEL_INSTANCE_GPU_COUNT not in labels
    assert LABEL_INSTANCE_GPU_NAME not in labels


def test_price_by_capacity_type() -> None:
    s = spec(on_demand_price=2.5, spot_price=0.9)
    assert s.price(CapacityType.ON_DEMAND) == 2.5
    assert s.price(CapacityType.SPOT) == 0.9


def test_with_prices_returns_a_new_catalogue() -> None:
    base = load_catalogue()
    before = base.get("ml.c5.2xlarge")
    updated = base.with_prices(
        {
            "ml.c5.2xlarge": PriceOverride(on_demand=0.5, spot=0.2),
            "ml.g5.xlarge": PriceOverride(spot=0.7),
        }
    )
    assert updated is not base
    assert len(updated) == len(base)
    assert updated.get("ml.c5.2xlarge").price(CapacityType.ON_DEMAND) == 0.5
    assert updated.get("ml.c5.2xlarge").price(CapacityType.SPOT) == 0.2
    g5 = updated.get("ml.g5.xlarge")
    assert g5.spot_price == 0.7
    assert g5.on_demand_price == base.get("ml.g5.xlarge").on_demand_price
    assert base.get("ml.c5.2xlarge") == before  # the original is untouched
    assert updated.get("ml.c5.2xlarge").allocatable() == before.allocatable()


def test_with_prices_rejects_unknown_names_and_bad_prices() -> None:
    with pytest.raises(UnknownInstanceType, match=re.escape("ml.c5.2xlarge")):
        load_catalogue().with_prices({"ml.c5.2xlarg": PriceOverride(on_demand=1.0)})
    with pytest.raises(ValueError, match="spot_price"):
        load_catalogue().with_prices({"ml.c5.2xlarge": PriceOverride(spot=-1.0)})


# --- lookups ---


def test_unknown_instance_type_suggests_close_names() -> None:
    with pytest.raises(UnknownInstanceType) as info:
        load_catalogue().get("ml.p5.48xlarg")
    error = info.value
    assert isinstance(error, KeyError)
    assert error.name == "ml.p5.48xlarg"
    assert "ml.p5.48xlarge" in error.suggestions
    assert "ml.p5.48xlarg" in str(error) and "did you mean" in str(error)


def test_unknown_instance_type_suggests_the_ml_prefix_first() -> None:
    with pytest.raises(UnknownInstanceType) as info:
        load_catalogue().get("p5.48xlarge")
    assert info.value.suggestions[0] == "ml.p5.48xlarge"


def test_unknown_instance_type_without_suggestions() -> None:
    with pytest.raises(UnknownInstanceType) as info:
        load_catalogue().get("zzz")
    assert info.value.suggestions == ()
    assert str(info.value) == "unknown instance type 'zzz'"


def test_from_specs_builds_a_synthetic_catalogue() -> None:
    catalogue = Catalogue.from_specs([spec("ml.b.large"), spec("ml.a.large", spot_price=0.1)])
    assert catalogue.names() == ("ml.a.large", "ml.b.large")
    assert catalogue.get("ml.a.large").spot_price == 0.1
    assert "ml.c5.2xlarge" not in catalogue
    with pytest.raises(ValueError, match="twice"):
        Catalogue.from_specs([spec("ml.a.large"), spec("ml.a.large")])


def test_invalid_specs_are_rejected() -> None:
    with pytest.raises(ValueError, match="arch"):
        spec(arch="x86_64")
    with pytest.raises(ValueError, match="positive"):
        spec(vcpu=0)
    with pytest.raises(ValueError, match="on_demand_price"):
        spec(on_demand_price=float("nan"))


# --- the packaged JSON is exactly what the generator writes ---


def test_packaged_json_is_what_the_generator_produces(tmp_path: Path) -> None:
    out = tmp_path / "instance_types.json"
    assert _generate.main([str(out)]) == 0
    assert out.read_bytes() == PACKAGED_JSON.read_bytes()
    assert _generate.main(["--check", str(PACKAGED_JSON)]) == 0


def test_generator_check_detects_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "instance_types.json"
    stale.write_text("{}\n", encoding="utf-8")
    assert _generate.main(["--check", str(stale)]) == 1


def test_generated_json_marks_prices_as_approximate() -> None:
    document = json.loads(PACKAGED_JSON.read_text(encoding="utf-8"))
    assert "APPROXIMATE" in document["_comment"]
    assert "override" in document["_comment"].lower()
