"""Regenerates the small torch.save fixtures for PyTorchCheckpointTests (run with /usr/bin/python3, torch 1.13).
Every value is a formula (arange), so the C# tests rebuild the expectations without Python."""
import collections, os, torch

here = os.path.dirname(os.path.abspath(__file__))
base = torch.arange(24, dtype=torch.float32)
obj = collections.OrderedDict()
obj["transposed"] = base[:12].reshape(3, 4).t()                 # non-contiguous view, stride (1, 4)
obj["sliced"] = base.reshape(4, 6)[1:3, ::2]                    # offset 6, stride (6, 2), shares base's storage
obj["half"] = (torch.arange(6, dtype=torch.float32) / 4).half().reshape(2, 3)
obj["bf16"] = (torch.arange(4, dtype=torch.float32) - 1.5).bfloat16()
obj["double"] = torch.arange(3, dtype=torch.float64) * 0.1
obj["long"] = torch.tensor([-(2 ** 40), 0, 7], dtype=torch.int64)
obj["int"] = torch.tensor([-3, 5], dtype=torch.int32)
obj["bool"] = torch.tensor([True, False, True])
obj["byte"] = torch.tensor([0, 255, 17], dtype=torch.uint8)
obj["scalar"] = torch.tensor(2.5)
obj["param"] = torch.nn.Parameter(torch.ones(2, 2))
obj["nested"] = {"list": [1, 2.5, "x", None, True], "tuple": (3, -4), "big": 2 ** 70, "neg": -300}
torch.save(obj, os.path.join(here, "pt_mixed.pt"))
torch.save(obj, os.path.join(here, "pt_mixed_legacy.pt"), _use_new_zipfile_serialization=False)

class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))
torch.save({"x": Evil()}, os.path.join(here, "pt_evil.pt"))
