using System.Runtime.InteropServices;

namespace Deid.Training;

/// <summary>
/// Bit-for-bit repeatable CPU math, which <c>--resume</c> needs to continue exactly: libtorch's CPU build links Intel
/// MKL, whose GEMM kernels may take a different summation order depending on the memory alignment of the operands,
/// so two identical runs can drift apart in the last bits (observed here on D_W's small matrices). MKL's Conditional
/// Numerical Reproducibility mode (<c>MKL_CBWR=AUTO,STRICT</c>) removes that. An explicit, process-wide choice:
/// <c>deid train</c> makes it at start-up (before any tensor math), as the tests do; a user's own MKL_CBWR wins.
/// </summary>
public static class Reproducibility
{
    private const int MklCbwrAuto = 2, MklCbwrStrict = 0x10000;
    private static bool s_done;

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv(string name, string value, int overwrite);

    [DllImport("libtorch_cpu", EntryPoint = "mkl_serv_cbwr_set")]
    private static extern int MklCbwrSet(int settings);

    /// <summary>Sets MKL's strict reproducible mode (env for MKL's start-up, and the call where MKL is already loaded). True when applied.</summary>
    public static bool StrictCpuMath()
    {
        if (s_done) return true;
        if (Environment.GetEnvironmentVariable("MKL_CBWR") is { Length: > 0 }) return s_done = true;
        bool ok = false;
        try { ok = SetEnv("MKL_CBWR", "AUTO,STRICT", 0) == 0; } catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        try
        {
            _ = TorchSharp.torch.get_num_threads();     // loads libtorch (and MKL inside it) through TorchSharp's resolver
            ok |= MklCbwrSet(MklCbwrAuto | MklCbwrStrict) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        return s_done = ok;
    }
}
