using Deid.Models.Mapping;
using Deid.Training.Losses;
using Xunit;
using static TorchSharp.torch;

namespace Deid.Training.Tests;

public class LossTests
{
    [Fact]
    public void Adversarial_losses_are_the_non_saturating_logistic_ones()
    {
        using var scope = NewDisposeScope();
        using var dw = new DW(4, new long[] { 1 });
        var real = randn(5, 4, generator: new TorchSharp.torch.Generator(1));
        var fake = randn(5, 4, generator: new TorchSharp.torch.Generator(2));
        var dr = dw.call(real); var df = dw.call(fake);
        double expectD = (-(dr.sigmoid().log()).mean() - (1 - df.sigmoid()).log().mean()).item<float>();
        Assert.Equal(expectD, AdversarialLosses.Discriminator(dw, real, fake).item<float>(), 5);
        Assert.Equal((-(df.sigmoid().log()).mean()).item<float>(), AdversarialLosses.Generator(dw, fake).item<float>(), 5);
    }

    [Fact]
    public void R1_of_a_linear_discriminator_is_half_gamma_times_its_squared_weight_norm()
    {
        using var scope = NewDisposeScope();
        using var dw = new DW(4, new long[] { 1 });
        var w = dw.parameters().First(p => p.dim() == 2);
        var real = randn(7, 4);
        var r1 = AdversarialLosses.R1(dw, real, 10);
        Assert.Equal((5 * w.square().sum()).item<float>(), r1.item<float>(), 4);
        r1.backward();   // the penalty trains D_W
        Assert.True(w.grad is not null && w.grad.abs().sum().item<float>() > 0);
    }

    [Fact]
    public void Identity_loss_is_the_mean_absolute_code_difference()
    {
        using var scope = NewDisposeScope();
        var a = tensor(new float[] { 1, 2, 3, 4 }).view(2, 2);
        var b = tensor(new float[] { 1, 0, 3, 8 }).view(2, 2);
        Assert.Equal(1.5, IdentityLoss.Compute(a, b).item<float>(), 6);
    }

    [Fact]
    public void Landmark_loss_ignores_the_17_jaw_points()
    {
        using var scope = NewDisposeScope();
        var a = rand(2, 68, 2) * 100;
        var b = a.clone();
        b[.., ..17, ..] += 50;             // jaw moved: no loss
        Assert.Equal(0, LandmarkLoss.Compute(a, b).item<float>(), 6);
        b[.., 30, 0] += 51;                // one nose point moved by 51 px in x, in both images of the batch
        Assert.Equal(51.0 * 51 / (51 * 2), LandmarkLoss.Compute(a, b).item<float>(), 3);
    }
}
