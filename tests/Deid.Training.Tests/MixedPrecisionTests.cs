using Xunit;
using static TorchSharp.torch;

namespace Deid.Training.Tests;

/// <summary>precision bf16 on the tiny configuration: the frozen networks in bf16, everything trained and every loss in fp32.</summary>
public class MixedPrecisionTests
{
    [Fact]
    public void Bf16_steps_are_finite_and_close_to_fp32_from_the_same_start()
    {
        using var data = new TinyData();
        var losses = new Dictionary<string, List<StepLosses>>();
        foreach (var precision in new[] { "fp32", "bf16" })
        {
            var cfg = TinyData.Config(3) with { Precision = precision, BatchSize = 2 };
            using var t = TinyData.NewTrainer(cfg, data.Dir, data.Temp.File($"run-{precision}"));
            t.StartNew();
            losses[precision] = Enumerable.Range(0, 3).Select(_ => t.TrainStep()).ToList();
            Assert.Null(t.LossScale);   // bf16 has fp32's exponent range: no loss scaling
        }
        foreach (var (a, b) in losses["fp32"].Zip(losses["bf16"]))
        {
            TestContext.Current.TestOutputHelper?.WriteLine($"step {a.Step}: fp32 {a.Total:G6} (id {a.Id:G4} lnd {a.Lnd:G4} rec {a.Rec:G4})  bf16 {b.Total:G6} (id {b.Id:G4} lnd {b.Lnd:G4} rec {b.Rec:G4})");
            foreach (var v in new[] { b.Total, b.Adv, b.Id, b.Lnd, b.Rec, b.D, b.R1 }) Assert.True(double.IsFinite(v));
            // bf16 keeps 8 bits of mantissa (relative rounding 2^-8 per op): a few percent on a whole loss.
            Assert.Equal(a.Total, b.Total, a.Total * 0.05 + 1e-3);
            Assert.Equal(a.Rec, b.Rec, a.Rec * 0.05 + 1e-3);
            Assert.Equal(a.Id, b.Id, a.Id * 0.05 + 1e-3);
        }
    }

    [Fact]
    public void The_frozen_networks_hold_bf16_and_the_trained_ones_fp32()
    {
        var (model, dw) = TinyData.Build(TinyData.Config() with { Precision = "bf16" });
        using var _m = model; using var _d = dw;
        Assert.Equal(ScalarType.BFloat16, model.FrozenType);
        Assert.All(model.FrozenModules.SelectMany(m => m.parameters()), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        Assert.All(model.TrainableParameters().Concat(dw.parameters()), p => Assert.Equal(ScalarType.Float32, p.dtype));
    }

    [Fact]
    public void Fp16_on_CPU_is_refused_in_one_line()
    {
        var e = Assert.Throws<RunException>(() => TinyData.Build(TinyData.Config() with { Precision = "fp16" }));
        Assert.Contains("precision fp16 needs a CUDA device", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void The_loss_scaler_skips_an_overflowing_step_halves_and_regrows()
    {
        var s = new LossScaler();
        using var p = new TorchSharp.Modules.Parameter(ones(3));
        p.grad = tensor(new float[] { 1, float.PositiveInfinity, 2 });
        Assert.False(s.Unscale([p]));
        Assert.Equal(LossScaler.InitialScale / 2, s.Scale);
        Assert.Equal(new float[] { 0, 0, 0 }, p.grad!.data<float>().ToArray());
        for (int i = 0; i < LossScaler.GrowthInterval; i++)
        {
            p.grad = full(3, (float)s.Scale);
            Assert.True(s.Unscale([p]));
        }
        Assert.Equal(new float[] { 1, 1, 1 }, p.grad!.data<float>().ToArray());
        Assert.Equal(LossScaler.InitialScale, s.Scale);
        Assert.Equal(1, s.State.SkippedSteps);
    }
}
