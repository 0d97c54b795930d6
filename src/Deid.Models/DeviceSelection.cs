using TorchSharp;

namespace Deid.Models;

/// <summary>Turns the CLI's <c>--device</c> value into a torch device.</summary>
public static class DeviceSelection
{
    /// <summary>
    /// "cpu", "cuda", "cuda:N" or "auto" (CUDA when available, else CPU). Asking for CUDA where it
    /// is unavailable is an error rather than a silent CPU fallback, because the user would otherwise
    /// get a run many times slower than they asked for without knowing why.
    /// </summary>
    public static torch.Device Resolve(string? spec)
    {
        var s = (spec ?? "cpu").Trim().ToLowerInvariant();
        if (s == "cpu") return torch.CPU;
        if (s == "auto") return CudaAvailable() ? Cuda(0) : torch.CPU;
        if (s == "cuda" || s == "gpu") return Cuda(0);
        if (s.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(s.AsSpan(5), out var index) && index >= 0)
            return Cuda(index);
        throw new ArgumentException($"unknown device '{spec}' (use cpu, cuda, cuda:N or auto)");
    }

    public static bool CudaAvailable()
    {
        try { return torch.cuda.is_available(); }
        catch (Exception) { return false; }
    }

    private static torch.Device Cuda(int index)
    {
        if (!CudaAvailable())
            throw new InvalidOperationException(
                "CUDA was requested but is not available (no NVIDIA GPU/driver, or Deid was built with the CPU libtorch; rebuild with -p:TorchDevice=cuda), use --device cpu");
        int count = torch.cuda.device_count();
        if (index >= count)
            throw new InvalidOperationException($"CUDA device {index} requested but only {count} device(s) are available");
        DisableTf32();
        return new torch.Device(DeviceType.CUDA, index);
    }

    /// <summary>
    /// cuDNN convolutions default to TF32 on Ampere+, which costs ~1e-3 relative accuracy; Deid's
    /// parity with the reference networks (and CPU/GPU agreement) needs full float32.
    /// </summary>
    public static void DisableTf32()
    {
        torch.backends.cuda.matmul.allow_tf32 = false;
        torch.backends.cudnn.allow_tf32 = false;
    }
}
