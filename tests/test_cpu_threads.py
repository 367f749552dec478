"""CPU threads for the model: physical cores among the CPUs the process may use, within its quota,
set once and never over the user's own choice."""

import torch

from napari_odise import cpu_threads


def fake_sysfs(root, cores):
    """cpuN/topology files: ``cores`` maps a logical CPU to its (package, core)."""
    for cpu, (package, core) in cores.items():
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    return root


def test_hyper_threads_count_once(tmp_path):
    # 8 logical CPUs: two sockets of two cores, each core with two hyper-threads
    sysfs = fake_sysfs(tmp_path, {i: (i // 4, (i % 4) // 2) for i in range(8)})
    assert cpu_threads.physical_cores(set(range(8)), sysfs) == 4
    assert cpu_threads.physical_cores({0, 1}, sysfs) == 1  # two threads of one core
    assert cpu_threads.physical_cores({0, 2, 4}, sysfs) == 3


def test_quota_limits_the_threads(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_threads.cpu_quota(tmp_path / "cpu.max") == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_threads.cpu_quota(tmp_path / "cpu.max") is None
    assert cpu_threads.cpu_quota(tmp_path / "missing") is None


def test_set_once_and_never_over_the_users_choice(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(cpu_threads, "_configured", False)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert cpu_threads.use_physical_cores() is None  # the user chose
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
        monkeypatch.setattr(cpu_threads, "model_threads", lambda: 1)
        assert cpu_threads.use_physical_cores() == 1 and torch.get_num_threads() == 1
        torch.set_num_threads(2)  # the user's call after loading stays
        assert cpu_threads.use_physical_cores() is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
