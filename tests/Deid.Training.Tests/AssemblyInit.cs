using System.Runtime.CompilerServices;

namespace Deid.Training.Tests;

internal static class AssemblyInit
{
    /// <summary>As `deid train` does: MKL's reproducible mode before any tensor math (resume tests compare bits).</summary>
    [ModuleInitializer]
    internal static void Init() => Reproducibility.StrictCpuMath();
}
