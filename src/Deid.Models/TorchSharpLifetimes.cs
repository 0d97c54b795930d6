using System.Diagnostics;
using System.Reflection;

namespace Deid.Models;

/// <summary>
/// Whether the TorchSharp assembly in this process keeps its arguments alive across native calls.
/// TorchSharp 0.107 passes raw handles to libtorch and holds no reference to the Scalar or Tensor they
/// belong to, so an optimized wrapper lets the GC free one while libtorch still reads it (a use-after-free:
/// wrong values or a segfault, more likely the busier the machine). The build has the runtime compile
/// TorchSharp as debuggable code, where every argument lives to the end of its method
/// (scripts/torchsharp-debuggable.py, run by Directory.Build.targets on the copy in each output).
/// </summary>
public static class TorchSharpLifetimes
{
    /// <summary>Null when the loaded TorchSharp.dll was prepared; else one line saying what is wrong.</summary>
    public static string? Problem { get; } = Check(typeof(TorchSharp.torch).Assembly);

    private static string? Check(Assembly torchSharp)
    {
        var a = torchSharp.GetCustomAttribute<DebuggableAttribute>();
        if (a is { IsJITOptimizerDisabled: true, IsJITTrackingEnabled: true }) return null;
        return $"{torchSharp.Location} was not prepared by the build (scripts/torchsharp-debuggable.py): without it the " +
               "garbage collector can free tensors while libtorch uses them; rebuild with `make build`";
    }
}
