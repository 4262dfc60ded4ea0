"""Datasheet peaks: the vendor's figures for each device we know, every one with its source.

Every throughput here is DENSE. Vendors print tensor-core figures "with sparsity" (2:4
structured sparsity doubles them); where the datasheet gives only the sparse figure we
store half of it and the source says so. GeForce cards run FP16/BF16/FP8 tensor cores at
half rate when accumulating in FP32; matmul kernels accumulate in FP32, so we store the
FP32-accumulate rate (the lower one) for those cards.

Units: TFLOP/s (TOP/s for int8), GB/s (10^9 bytes per second), bytes. The vendors' "GB" of
HBM/GDDR capacity is binary (GiB) and is stored as such: the driver then reports slightly
less (ECC and reserved memory), which `memory_fits` allows for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

GiB = 2**30
MiB = 2**20

# Figures a DeviceSpec carries; each one has an entry in `DeviceSpec.sources` (an absent
# figure's source says why it is absent).
FIGURES = (
    "compute_capability", "sm_count", "memory_bytes", "dram_bandwidth_gb_s", "l2_bytes",
    "last_level_cache_bytes", "fp64_tflops", "fp64_tensor_tflops", "fp32_tflops",
    "tf32_tflops", "bf16_tflops", "fp16_tflops", "fp8_tflops", "fp4_tflops", "int8_tops",
)
# Figures no device may lack.
REQUIRED_FIGURES = (
    "compute_capability", "sm_count", "memory_bytes", "dram_bandwidth_gb_s", "l2_bytes",
    "last_level_cache_bytes", "fp64_tflops", "fp32_tflops", "bf16_tflops", "fp16_tflops",
)


@dataclass(frozen=True)
class Peaks:
    """The ceilings a roofline divides by: tensor-core rates by operand dtype, the SIMT rate, DRAM bandwidth.

    `tensor_tflops` is keyed by dtype name as in `solforge.spec.DType.canonical`
    ("bfloat16", "float8_e4m3fn", ...; "float64" carries the FP64 rate, tensor where the
    device has it). `simt_tflops` is the FP32 rate without tensor cores, in TFLOP/s.
    `dram_bandwidth_gb_s` is in 10^9 bytes/s. `source` is "datasheet" or "calibrated".
    """

    tensor_tflops: dict[str, float]
    simt_tflops: float
    dram_bandwidth_gb_s: float
    source: Literal["datasheet", "calibrated"]

    def tensor_peak_tflops(self, dtype_name: str) -> float:
        """Peak TFLOP/s of a matmul whose operands have `dtype_name`.

        Falls back to `simt_tflops` for a dtype with no tensor figure (float32 operands:
        TF32 would fail fp32 tolerances, so fp32 matmuls run at the SIMT rate).
        """
        return self.tensor_tflops.get(_canonical(dtype_name), self.simt_tflops)


@dataclass(frozen=True)
class DevicePeaks:
    """A device's datasheet peaks and calibrated ceilings, the ones SOL bounds use, and why.

    Made only by `choose_peaks`, the one place that decides which bound is used.
    """

    datasheet: Peaks | None
    calibrated: Peaks | None
    used: Peaks | None
    reason: str

    @property
    def source(self) -> Literal["datasheet", "calibrated"] | None:
        """Which peaks `used` are: "calibrated", "datasheet", or None when the device has neither."""
        return self.used.source if self.used is not None else None


def choose_peaks(datasheet: Peaks | None, calibrated: Peaks | None, *, calibration_note: str = "") -> DevicePeaks:
    """The rule: calibrated ceilings when measured, else datasheet peaks, else no bound.

    Calibrated ceilings win because they are what this very device, at its clocks and
    power limit, reaches; the datasheet promises boost-clock figures it may never see.
    `calibration_note` (e.g. "taken under load") is added to the reason when the
    calibrated ceilings are used. Source: DESIGN.md, "Speed of light".
    """
    if calibrated is not None:
        note = f" ({calibration_note})" if calibration_note else ""
        return DevicePeaks(datasheet, calibrated, calibrated,
                           f"calibrated ceilings{note}: what this device reached when measured")
    if datasheet is not None:
        return DevicePeaks(datasheet, None, datasheet,
                           "datasheet peaks: not calibrated yet (run `solforge calibrate`)")
    return DevicePeaks(None, None, None,
                       "no SOL bound: no datasheet entry and not calibrated (run `solforge calibrate`)")


@dataclass(frozen=True)
class DeviceSpec:
    """Datasheet figures of one device. Throughputs are dense, in TFLOP/s (int8 in TOP/s).

    `compute_capability` is what `torch.cuda.get_device_properties` reports as
    (major, minor); on ROCm that is the gfx target's major/minor (gfx942 -> (9, 4)).
    `sm_count` counts SMs (NVIDIA) or compute units (AMD). `memory_bytes` is the nominal
    capacity. `l2_bytes` is the L2; `last_level_cache_bytes` is the largest on-chip cache
    in front of DRAM (the same as L2, except AMD's Infinity Cache). `reported_names` are
    the names the driver is known to report for this device; they only break ties between
    devices with the same measurable properties.
    """

    key: str
    name: str
    vendor: Literal["nvidia", "amd"]
    arch: str
    compute_capability: tuple[int, int]
    sm_count: int
    memory_bytes: int
    dram_bandwidth_gb_s: float
    l2_bytes: int
    last_level_cache_bytes: int
    fp64_tflops: float
    fp64_tensor_tflops: float | None
    fp32_tflops: float
    tf32_tflops: float | None
    bf16_tflops: float
    fp16_tflops: float
    fp8_tflops: float | None
    fp4_tflops: float | None
    int8_tops: float | None
    reported_names: tuple[str, ...]
    sources: dict[str, str] = field(compare=False)
    notes: str = ""

    def peak_tflops(self, dtype_name: str) -> float | None:
        """Dense peak TFLOP/s of a matmul whose operands have `dtype_name`, or None if the device has no such path.

        Names as in `solforge.spec.DType.canonical`. float32 gives the SIMT FP32 rate (no
        TF32: it would fail fp32 tolerances); float64 gives the FP64 tensor rate where the
        device has one, else the FP64 vector rate; both fp8 formats share the fp8 rate;
        int8 gives TOP/s. Source: the figure's entry in `sources`.
        """
        name = _canonical(dtype_name)
        if name == "float64":
            return self.fp64_tensor_tflops if self.fp64_tensor_tflops is not None else self.fp64_tflops
        return {
            "float32": self.fp32_tflops,
            "tf32": self.tf32_tflops,
            "bfloat16": self.bf16_tflops,
            "float16": self.fp16_tflops,
            "float8_e4m3fn": self.fp8_tflops,
            "float8_e5m2": self.fp8_tflops,
            "float4_e2m1": self.fp4_tflops,
            "int8": self.int8_tops,
        }.get(name)

    def peaks(self) -> Peaks:
        """These datasheet figures as `Peaks(source="datasheet")`."""
        tensor = {
            name: peak
            for name in ("float64", "bfloat16", "float16", "float8_e4m3fn", "float8_e5m2", "float4_e2m1", "int8")
            if (peak := self.peak_tflops(name)) is not None
        }
        return Peaks(tensor, self.fp32_tflops, self.dram_bandwidth_gb_s, "datasheet")

    def figures(self) -> dict[str, object]:
        """Every figure in FIGURES with its value (None where the device lacks it)."""
        return {name: getattr(self, name) for name in FIGURES}

    def memory_fits(self, reported_bytes: int) -> bool:
        """Whether a driver-reported capacity is this device's: 88% to 102% of nominal.

        Drivers report less than the nominal GiB (ECC and reserved memory: an 80 GB H100
        reports 79.6 GiB, a 48 GB L40S with ECC 45 GiB); the margin stays far from the
        next capacity step (80 vs 94 vs 141 GB).
        """
        return 0.88 * self.memory_bytes <= reported_bytes <= 1.02 * self.memory_bytes


def _canonical(dtype_name: str) -> str:
    return "float8_e4m3fn" if dtype_name == "float8_e4m3" else dtype_name


def _dense(sparse: float) -> float:
    return sparse / 2


# ---- sources --------------------------------------------------------------------------

_SPARSE = "listed '* with sparsity' as {sparse}; dense is half"
_CC = "CUDA C++ Programming Guide, table 'Compute Capabilities' ({arch})"

H100_DS = "NVIDIA H100 Tensor Core GPU datasheet, 'Technical Specifications', {col} column"
H100_WP = "NVIDIA H100 Tensor Core GPU Architecture whitepaper, A100/H100 comparison table, {col} column"
H200_DS = "NVIDIA H200 Tensor Core GPU datasheet, 'Technical Specifications', H200 SXM column"
HGX_DS = "NVIDIA HGX platform datasheet, 'Individual Blackwell GPU Specifications', HGX B200 column"
B200_CNC = "Chips and Cheese, 'Nvidia's B200: Keeping the CUDA Juggernaut Rolling' (2025)"
A100_DS = "NVIDIA A100 Tensor Core GPU datasheet (80GB edition), 'Technical Specifications', {col} column"
A100_WP = "NVIDIA A100 Tensor Core GPU Architecture whitepaper, V100/A100 comparison table (108 SMs, 40 MB L2)"
L40S_DS = "NVIDIA L40S GPU datasheet, 'Technical Specifications'"
L40_DS = "NVIDIA L40 GPU datasheet, 'Technical Specifications'"
L4_DS = "NVIDIA L4 Tensor Core GPU datasheet, 'Technical Specifications'"
ADA_WP = "NVIDIA Ada GPU Architecture whitepaper, Appendix A, GeForce RTX 4090 table"
ADA_FP64 = "NVIDIA Ada GPU Architecture whitepaper: FP64 runs at 1/64 of the FP32 rate on AD10x ({fp32} / 64)"
RTXBW_WP = "NVIDIA RTX Blackwell GPU Architecture whitepaper, Appendix A, GeForce RTX 5090 table"
MI300X_DS = "AMD Instinct MI300X accelerator data sheet"
CDNA3_WP = "AMD CDNA 3 architecture white paper, MI300X peak theoretical throughput table"
ROCM_MI300 = "ROCm documentation, 'AMD Instinct MI300 series microarchitecture'"


def _hopper_sources(ds: str, wp: str, *, fp64: float, fp64t: float, fp32: float, tf32: float,
                    bf16: float, fp8: float, mem: str, bw: str, sms: int) -> dict[str, str]:
    return {
        "compute_capability": _CC.format(arch="Hopper: 9.0"),
        "sm_count": f"{wp}: {sms} SMs",
        "memory_bytes": f"{ds}: GPU Memory {mem}",
        "dram_bandwidth_gb_s": f"{ds}: GPU Memory Bandwidth {bw}",
        "l2_bytes": f"{wp}: L2 Cache Size 50 MB",
        "last_level_cache_bytes": f"{wp}: the L2 (50 MB) is the last on-chip cache",
        "fp64_tflops": f"{ds}: FP64 {fp64} TFLOPS",
        "fp64_tensor_tflops": f"{ds}: FP64 Tensor Core {fp64t} TFLOPS",
        "fp32_tflops": f"{ds}: FP32 {fp32} TFLOPS",
        "tf32_tflops": f"{ds}: TF32 Tensor Core " + _SPARSE.format(sparse=tf32),
        "bf16_tflops": f"{ds}: BFLOAT16 Tensor Core " + _SPARSE.format(sparse=bf16),
        "fp16_tflops": f"{ds}: FP16 Tensor Core " + _SPARSE.format(sparse=bf16),
        "fp8_tflops": f"{ds}: FP8 Tensor Core " + _SPARSE.format(sparse=fp8),
        "fp4_tflops": "Hopper tensor cores have no FP4 path (first in Blackwell; H100 whitepaper lists none)",
        "int8_tops": f"{ds}: INT8 Tensor Core " + _SPARSE.format(sparse=fp8),
    }


def _hopper(key: str, name: str, names: tuple[str, ...], sources: dict[str, str], *, sms: int,
            mem_gb: int, bw: float, fp64: float, fp64t: float, fp32: float, tf32_sparse: float,
            bf16_sparse: float, fp8_sparse: float) -> DeviceSpec:
    return DeviceSpec(
        key=key, name=name, vendor="nvidia", arch="sm_90", compute_capability=(9, 0), sm_count=sms,
        memory_bytes=mem_gb * GiB, dram_bandwidth_gb_s=bw, l2_bytes=50 * MiB, last_level_cache_bytes=50 * MiB,
        fp64_tflops=fp64, fp64_tensor_tflops=fp64t, fp32_tflops=fp32, tf32_tflops=_dense(tf32_sparse),
        bf16_tflops=_dense(bf16_sparse), fp16_tflops=_dense(bf16_sparse), fp8_tflops=_dense(fp8_sparse),
        fp4_tflops=None, int8_tops=_dense(fp8_sparse), reported_names=names, sources=sources,
    )


H100_SXM = _hopper(
    "h100-sxm", "NVIDIA H100 SXM5 80GB", ("NVIDIA H100 80GB HBM3",),
    _hopper_sources(H100_DS.format(col="H100 SXM"), H100_WP.format(col="H100 SXM5"), fp64=34, fp64t=67,
                    fp32=67, tf32=989, bf16=1979, fp8=3958, mem="80GB", bw="3.35TB/s", sms=132),
    sms=132, mem_gb=80, bw=3350.0, fp64=34.0, fp64t=67.0, fp32=67.0, tf32_sparse=989.0,
    bf16_sparse=1979.0, fp8_sparse=3958.0,
)

H100_PCIE = _hopper(
    "h100-pcie", "NVIDIA H100 PCIe 80GB", ("NVIDIA H100 PCIe",),
    _hopper_sources(H100_DS.format(col="H100 PCIe"), H100_WP.format(col="H100 PCIe"), fp64=26, fp64t=51,
                    fp32=51, tf32=756, bf16=1513, fp8=3026, mem="80GB", bw="2TB/s", sms=114),
    sms=114, mem_gb=80, bw=2000.0, fp64=26.0, fp64t=51.0, fp32=51.0, tf32_sparse=756.0,
    bf16_sparse=1513.0, fp8_sparse=3026.0,
)

H200_SXM = _hopper(
    "h200-sxm", "NVIDIA H200 SXM 141GB", ("NVIDIA H200",),
    _hopper_sources(H200_DS, H100_WP.format(col="H100 SXM5") + " (H200 is the same GH100 configuration)",
                    fp64=34, fp64t=67, fp32=67, tf32=989, bf16=1979, fp8=3958, mem="141GB",
                    bw="4.8TB/s", sms=132),
    sms=132, mem_gb=141, bw=4800.0, fp64=34.0, fp64t=67.0, fp32=67.0, tf32_sparse=989.0,
    bf16_sparse=1979.0, fp8_sparse=3958.0,
)

B200 = DeviceSpec(
    key="b200", name="NVIDIA B200 (HGX, 1000 W)", vendor="nvidia", arch="sm_100", compute_capability=(10, 0),
    sm_count=148, memory_bytes=180 * GiB, dram_bandwidth_gb_s=7700.0, l2_bytes=126 * MiB,
    last_level_cache_bytes=126 * MiB, fp64_tflops=37.0, fp64_tensor_tflops=37.0, fp32_tflops=75.0,
    tf32_tflops=_dense(2200.0), bf16_tflops=_dense(4500.0), fp16_tflops=_dense(4500.0),
    fp8_tflops=_dense(9000.0), fp4_tflops=_dense(18000.0), int8_tops=_dense(9000.0),
    reported_names=("NVIDIA B200",),
    sources={
        "compute_capability": _CC.format(arch="Blackwell datacenter: 10.0"),
        "sm_count": f"{B200_CNC}: 74 SMs enabled per die, 148 per GPU (NVIDIA publishes no whitepaper count)",
        "memory_bytes": f"{HGX_DS}: GPU Memory 180GB HBM3E",
        "dram_bandwidth_gb_s": f"{HGX_DS}: 7.7TB/s (earlier DGX B200 material: 8TB/s)",
        "l2_bytes": f"{B200_CNC}: 126 MB L2 across the two dies",
        "last_level_cache_bytes": f"{B200_CNC}: the L2 is the last on-chip cache",
        "fp64_tflops": f"{HGX_DS}: FP64/FP64 Tensor Core 37 TFLOPS (an earlier edition listed 40)",
        "fp64_tensor_tflops": f"{HGX_DS}: FP64/FP64 Tensor Core 37 TFLOPS",
        "fp32_tflops": f"{HGX_DS}: FP32 75 TFLOPS (an earlier edition listed 80)",
        "tf32_tflops": f"{HGX_DS}: TF32 Tensor Core " + _SPARSE.format(sparse="2.2 PFLOPS"),
        "bf16_tflops": f"{HGX_DS}: FP16/BF16 Tensor Core " + _SPARSE.format(sparse="4.5 PFLOPS"),
        "fp16_tflops": f"{HGX_DS}: FP16/BF16 Tensor Core " + _SPARSE.format(sparse="4.5 PFLOPS"),
        "fp8_tflops": f"{HGX_DS}: FP8/FP6 Tensor Core " + _SPARSE.format(sparse="9 PFLOPS"),
        "fp4_tflops": f"{HGX_DS}: FP4 Tensor Core " + _SPARSE.format(sparse="18 PFLOPS"),
        "int8_tops": f"{HGX_DS}: INT8 Tensor Core " + _SPARSE.format(sparse="9 POPS"),
    },
)


def _a100(key: str, name: str, names: tuple[str, ...], col: str, bw: float) -> DeviceSpec:
    ds = A100_DS.format(col=col)
    return DeviceSpec(
        key=key, name=name, vendor="nvidia", arch="sm_80", compute_capability=(8, 0), sm_count=108,
        memory_bytes=80 * GiB, dram_bandwidth_gb_s=bw, l2_bytes=40 * MiB, last_level_cache_bytes=40 * MiB,
        fp64_tflops=9.7, fp64_tensor_tflops=19.5, fp32_tflops=19.5, tf32_tflops=156.0, bf16_tflops=312.0,
        fp16_tflops=312.0, fp8_tflops=None, fp4_tflops=None, int8_tops=624.0, reported_names=names,
        sources={
            "compute_capability": _CC.format(arch="Ampere GA100: 8.0"),
            "sm_count": A100_WP,
            "memory_bytes": f"{ds}: GPU Memory 80GB HBM2e",
            "dram_bandwidth_gb_s": f"{ds}: GPU Memory Bandwidth {bw:,.0f}GB/s",
            "l2_bytes": A100_WP,
            "last_level_cache_bytes": f"{A100_WP}: the L2 is the last on-chip cache",
            "fp64_tflops": f"{ds}: FP64 9.7 TFLOPS",
            "fp64_tensor_tflops": f"{ds}: FP64 Tensor Core 19.5 TFLOPS",
            "fp32_tflops": f"{ds}: FP32 19.5 TFLOPS",
            "tf32_tflops": f"{ds}: Tensor Float 32 156 TFLOPS (312 with sparsity)",
            "bf16_tflops": f"{ds}: BFLOAT16 Tensor Core 312 TFLOPS (624 with sparsity)",
            "fp16_tflops": f"{ds}: FP16 Tensor Core 312 TFLOPS (624 with sparsity)",
            "fp8_tflops": "Ampere tensor cores have no FP8 path (A100 whitepaper; FP8 arrives with Hopper and Ada)",
            "fp4_tflops": "Ampere tensor cores have no FP4 path (A100 whitepaper)",
            "int8_tops": f"{ds}: INT8 Tensor Core 624 TOPS (1248 with sparsity)",
        },
    )


A100_SXM_80GB = _a100("a100-sxm-80gb", "NVIDIA A100 SXM4 80GB", ("NVIDIA A100-SXM4-80GB",), "A100 80GB SXM", 2039.0)
A100_PCIE_80GB = _a100("a100-pcie-80gb", "NVIDIA A100 PCIe 80GB", ("NVIDIA A100 80GB PCIe",), "A100 80GB PCIe", 1935.0)


def _ada_datacenter(key: str, name: str, names: tuple[str, ...], ds: str, *, sms: int, mem_gb: int,
                    bw: float, l2_mib: int, l2_src: str, sm_src: str, fp32: float, tf32: float,
                    bf16: float, fp8: float, int8: float, dense_src: str) -> DeviceSpec:
    return DeviceSpec(
        key=key, name=name, vendor="nvidia", arch="sm_89", compute_capability=(8, 9), sm_count=sms,
        memory_bytes=mem_gb * GiB, dram_bandwidth_gb_s=bw, l2_bytes=l2_mib * MiB,
        last_level_cache_bytes=l2_mib * MiB, fp64_tflops=fp32 / 64, fp64_tensor_tflops=None, fp32_tflops=fp32,
        tf32_tflops=tf32, bf16_tflops=bf16, fp16_tflops=bf16, fp8_tflops=fp8, fp4_tflops=None, int8_tops=int8,
        reported_names=names,
        sources={
            "compute_capability": _CC.format(arch="Ada: 8.9"),
            "sm_count": sm_src,
            "memory_bytes": f"{ds}: GPU Memory {mem_gb}GB GDDR6",
            "dram_bandwidth_gb_s": f"{ds}: Memory Bandwidth {bw:,.0f}GB/s",
            "l2_bytes": l2_src,
            "last_level_cache_bytes": f"{l2_src}; the L2 is the last on-chip cache",
            "fp64_tflops": ADA_FP64.format(fp32=fp32),
            "fp64_tensor_tflops": "Ada tensor cores have no FP64 path (Ada whitepaper)",
            "fp32_tflops": f"{ds}: FP32 {fp32} TFLOPS",
            "tf32_tflops": f"{ds}: TF32 Tensor Core {dense_src}",
            "bf16_tflops": f"{ds}: BFLOAT16 Tensor Core {dense_src}",
            "fp16_tflops": f"{ds}: FP16 Tensor Core {dense_src}",
            "fp8_tflops": f"{ds}: FP8 Tensor Core {dense_src}",
            "fp4_tflops": "Ada tensor cores have no FP4 path (first in Blackwell)",
            "int8_tops": f"{ds}: INT8 Tensor Core {dense_src}",
        },
    )


_AD102_L2 = "Ada whitepaper: AD102 carries 96 MB of L2; the L40 reports 96 MiB (arXiv 2606.22588)"
_AD102_SMS = "L40/L40S datasheets: 18,176 CUDA cores = 142 SMs x 128 (Ada whitepaper: 128 CUDA cores per SM)"

L40S = _ada_datacenter(
    "l40s", "NVIDIA L40S", ("NVIDIA L40S",), L40S_DS, sms=142, mem_gb=48, bw=864.0, l2_mib=96,
    l2_src=_AD102_L2, sm_src=_AD102_SMS, fp32=91.6, tf32=183.0, bf16=362.05, fp8=733.0, int8=733.0,
    dense_src="dense figure as listed (TF32 183, BF16/FP16 362.05, FP8/INT8 733; twice that '* with sparsity')",
)
L40 = _ada_datacenter(
    "l40", "NVIDIA L40", ("NVIDIA L40",), L40_DS, sms=142, mem_gb=48, bw=864.0, l2_mib=96,
    l2_src=_AD102_L2, sm_src=_AD102_SMS, fp32=90.5, tf32=90.5, bf16=181.05, fp8=362.0, int8=362.0,
    dense_src="dense figure as listed (TF32 90.5, BF16/FP16 181.05, FP8/INT8 362; twice that '* with sparsity')",
)
L4 = _ada_datacenter(
    "l4", "NVIDIA L4", ("NVIDIA L4",), L4_DS, sms=58, mem_gb=24, bw=300.0, l2_mib=48,
    l2_src="Ada whitepaper: AD104 carries 48 MB of L2",
    sm_src="TechPowerUp GPU database, NVIDIA L4: 7,424 CUDA cores, 58 SMs (the datasheet lists no SM count)",
    fp32=30.3, tf32=_dense(120.0), bf16=_dense(242.0), fp8=_dense(485.0), int8=_dense(485.0),
    dense_src="listed only '* with sparsity' (TF32 120, BF16/FP16 242, FP8/INT8 485); dense is half",
)

RTX_4090 = DeviceSpec(
    key="rtx-4090", name="NVIDIA GeForce RTX 4090", vendor="nvidia", arch="sm_89", compute_capability=(8, 9),
    sm_count=128, memory_bytes=24 * GiB, dram_bandwidth_gb_s=1008.0, l2_bytes=72 * MiB,
    last_level_cache_bytes=72 * MiB, fp64_tflops=82.6 / 64, fp64_tensor_tflops=None, fp32_tflops=82.6,
    tf32_tflops=82.6, bf16_tflops=165.2, fp16_tflops=165.2, fp8_tflops=330.3, fp4_tflops=None,
    int8_tops=660.6, reported_names=("NVIDIA GeForce RTX 4090",),
    notes="GeForce: FP16/BF16/FP8 stored at the FP32-accumulate rate, half the FP16-accumulate rate.",
    sources={
        "compute_capability": _CC.format(arch="Ada: 8.9"),
        "sm_count": f"{ADA_WP}: 128 SMs",
        "memory_bytes": f"{ADA_WP}: 24 GB GDDR6X",
        "dram_bandwidth_gb_s": f"{ADA_WP}: Memory Bandwidth 1008 GB/sec",
        "l2_bytes": f"{ADA_WP}: L2 Cache Size 73728 KB",
        "last_level_cache_bytes": f"{ADA_WP}: the L2 is the last on-chip cache",
        "fp64_tflops": ADA_FP64.format(fp32=82.6),
        "fp64_tensor_tflops": "Ada tensor cores have no FP64 path (Ada whitepaper)",
        "fp32_tflops": f"{ADA_WP}: Peak FP32 TFLOPS (non-Tensor) 82.6",
        "tf32_tflops": f"{ADA_WP}: Peak TF32 Tensor TFLOPS 82.6 dense (165.2 with sparsity)",
        "bf16_tflops": f"{ADA_WP}: Peak BF16 Tensor TFLOPS with FP32 Accumulate 165.2 dense (330.4 sparse)",
        "fp16_tflops": f"{ADA_WP}: Peak FP16 Tensor TFLOPS with FP32 Accumulate 165.2 dense "
                       "(330.3 with FP16 accumulate, not stored)",
        "fp8_tflops": f"{ADA_WP}: Peak FP8 Tensor TFLOPS with FP32 Accumulate 330.3 dense "
                      "(660.6 with FP16 accumulate, not stored)",
        "fp4_tflops": "Ada tensor cores have no FP4 path (first in Blackwell)",
        "int8_tops": f"{ADA_WP}: Peak INT8 Tensor TOPS 660.6 dense (1321.2 with sparsity)",
    },
)

RTX_5090 = DeviceSpec(
    key="rtx-5090", name="NVIDIA GeForce RTX 5090", vendor="nvidia", arch="sm_120", compute_capability=(12, 0),
    sm_count=170, memory_bytes=32 * GiB, dram_bandwidth_gb_s=1792.0, l2_bytes=96 * MiB,
    last_level_cache_bytes=96 * MiB, fp64_tflops=104.8 / 64, fp64_tensor_tflops=None, fp32_tflops=104.8,
    tf32_tflops=104.8, bf16_tflops=209.5, fp16_tflops=209.5, fp8_tflops=419.0, fp4_tflops=1676.0,
    int8_tops=838.0, reported_names=("NVIDIA GeForce RTX 5090",),
    notes="GeForce: FP16/BF16/FP8 stored at the FP32-accumulate rate, half the FP16-accumulate rate.",
    sources={
        "compute_capability": _CC.format(arch="Blackwell GeForce: 12.0"),
        "sm_count": f"{RTXBW_WP}: 170 SMs (21,760 CUDA cores)",
        "memory_bytes": f"{RTXBW_WP}: 32 GB GDDR7",
        "dram_bandwidth_gb_s": f"{RTXBW_WP}: Memory Bandwidth 1792 GB/sec (512-bit, 28 Gbps)",
        "l2_bytes": f"{RTXBW_WP}: L2 Cache Size 98304 KB",
        "last_level_cache_bytes": f"{RTXBW_WP}: the L2 is the last on-chip cache",
        "fp64_tflops": f"{RTXBW_WP}: FP64 at 1/64 of the FP32 rate (104.8 / 64)",
        "fp64_tensor_tflops": "GeForce Blackwell tensor cores have no FP64 path",
        "fp32_tflops": f"{RTXBW_WP}: Peak FP32 TFLOPS (non-Tensor) 104.8",
        "tf32_tflops": f"{RTXBW_WP}: Peak TF32 Tensor TFLOPS 104.8 dense (209.5 with sparsity)",
        "bf16_tflops": f"{RTXBW_WP}: Peak BF16 Tensor TFLOPS with FP32 Accumulate 209.5 dense (419 sparse)",
        "fp16_tflops": f"{RTXBW_WP}: Peak FP16 Tensor TFLOPS with FP32 Accumulate 209.5 dense "
                       "(419 with FP16 accumulate, not stored)",
        "fp8_tflops": f"{RTXBW_WP}: Peak FP8 Tensor TFLOPS with FP32 Accumulate 419 dense "
                      "(838 with FP16 accumulate, not stored)",
        "fp4_tflops": f"{RTXBW_WP}: Peak FP4 Tensor TFLOPS with FP32 Accumulate 1676 dense (3352 with sparsity)",
        "int8_tops": f"{RTXBW_WP}: Peak INT8 Tensor TOPS 838 dense (1676 with sparsity)",
    },
)

MI300X = DeviceSpec(
    key="mi300x", name="AMD Instinct MI300X", vendor="amd", arch="gfx942", compute_capability=(9, 4),
    sm_count=304, memory_bytes=192 * GiB, dram_bandwidth_gb_s=5300.0, l2_bytes=8 * 4 * MiB,
    last_level_cache_bytes=256 * MiB, fp64_tflops=81.7, fp64_tensor_tflops=163.4, fp32_tflops=163.4,
    tf32_tflops=653.7, bf16_tflops=1307.4, fp16_tflops=1307.4, fp8_tflops=2614.9, fp4_tflops=None,
    int8_tops=2614.9, reported_names=("AMD Instinct MI300X", "AMD Instinct MI300X VF"),
    sources={
        "compute_capability": "HIP reports gfx942 as major 9, minor 4 (hipDeviceProp_t.major/minor, gcnArchName)",
        "sm_count": f"{ROCM_MI300}: 8 XCDs x 38 active CUs = 304 CUs",
        "memory_bytes": f"{MI300X_DS}: 192 GB HBM3",
        "dram_bandwidth_gb_s": f"{MI300X_DS}: Peak Theoretical Memory Bandwidth 5.3 TB/s",
        "l2_bytes": f"{ROCM_MI300}: 4 MB L2 per XCD, 8 XCDs (torch reports one XCD's 4 MB)",
        "last_level_cache_bytes": f"{ROCM_MI300}: 256 MB AMD Infinity Cache behind the L2s",
        "fp64_tflops": f"{MI300X_DS}: Peak FP64 Vector 81.7 TFLOPS",
        "fp64_tensor_tflops": f"{MI300X_DS}: Peak FP64 Matrix 163.4 TFLOPS",
        "fp32_tflops": f"{MI300X_DS}: Peak FP32 Vector 163.4 TFLOPS",
        "tf32_tflops": f"{CDNA3_WP}: TF32 Matrix 653.7 dense (1307.4 with sparsity)",
        "bf16_tflops": f"{MI300X_DS}: Peak BF16 1307.4 TFLOPS dense (2614.9 with sparsity)",
        "fp16_tflops": f"{MI300X_DS}: Peak FP16 1307.4 TFLOPS dense (2614.9 with sparsity)",
        "fp8_tflops": f"{MI300X_DS}: Peak FP8 2614.9 TFLOPS dense (5229.8 with sparsity)",
        "fp4_tflops": "CDNA 3 matrix cores have no FP4 path (first in CDNA 4, MI350 series)",
        "int8_tops": f"{MI300X_DS}: Peak INT8 2614.9 TOPS dense (5229.8 with sparsity)",
    },
)

DEVICES: tuple[DeviceSpec, ...] = (
    H100_SXM, H100_PCIE, H200_SXM, B200, A100_SXM_80GB, A100_PCIE_80GB, L40S, L40, L4, RTX_4090, RTX_5090, MI300X,
)


def spec_by_key(key: str) -> DeviceSpec:
    """The table entry with this `key` (e.g. "h100-sxm"); raises KeyError for an unknown key."""
    for spec in DEVICES:
        if spec.key == key:
            return spec
    raise KeyError(key)

