using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Deid.Models.Tests;

/// <summary>
/// TorchSharp 0.107 keeps no reference to a Scalar or Tensor while libtorch uses its handle; the build makes
/// the runtime compile TorchSharp as debuggable code so that arguments outlive the native call
/// (scripts/torchsharp-debuggable.py). Without it, a CI test process segfaulted under load.
/// </summary>
public class TorchSharpLifetimeTests
{
    [Fact]
    public void TheTorchSharpInThisOutputWasPreparedByTheBuild() => Assert.Null(TorchSharpLifetimes.Problem);

    /// <summary>
    /// Every op here hands libtorch a Scalar that nothing holds once its handle is read (the 0.5, the 1.0 and
    /// the alpha = 1 TorchSharp makes itself in add), and add gets an unowned temporary Tensor. A thread that
    /// does nothing but collect and run finalizers frees them mid-call as soon as the JIT lets it: unprepared,
    /// this failed ("toFloat" on a freed Scalar) within about 300 iterations, every time in five runs.
    /// </summary>
    [Fact]
    public void ScalarsAndTemporariesSurviveACollectorThatNeverStops()
    {
        using var x = ones(1 << 20);
        var stop = false;
        var collector = new Thread(() => { while (!Volatile.Read(ref stop)) { GC.Collect(); GC.WaitForPendingFinalizers(); } })
        {
            IsBackground = true,
        };
        collector.Start();
        try
        {
            for (var i = 0; i < 1000; i++)
            {
                using var z = x.add(x.mul(0.5)).sub_(1.0);
                Assert.Equal(0.5f, z[12345].item<float>());
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            collector.Join();
        }
    }
}
