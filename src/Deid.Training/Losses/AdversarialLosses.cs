using Deid.Models.Mapping;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Deid.Training.Losses;

/// <summary>
/// The W-space adversarial game of §3.3: D_W tells real w (mapped from z by G's own mapping network) from M's output.
/// Non-saturating logistic loss (Goodfellow et al.) and the R1 penalty on real samples (Mescheder et al. 2018).
/// </summary>
public static class AdversarialLosses
{
    /// <summary>D_W's loss: −log σ(D(w_real)) − log(1 − σ(D(w_fake))), batch means. <paramref name="fakeW"/> is detached here.</summary>
    public static Tensor Discriminator(DW dw, Tensor realW, Tensor fakeW)
    {
        using var scope = NewDisposeScope();
        var real = dw.call(realW);
        var fake = dw.call(fakeW.detach());
        return (F.softplus(-real).mean() + F.softplus(fake).mean()).MoveToOuterDisposeScope();
    }

    /// <summary>R1 = γ/2 · E‖∇_w D_W(w)‖² on real w (a graph is kept so the penalty trains D_W).</summary>
    public static Tensor R1(DW dw, Tensor realW, double gamma)
    {
        using var scope = NewDisposeScope();
        var w = realW.detach().requires_grad_(true);
        var logits = dw.call(w);
        var grad = torch.autograd.grad(new[] { logits.sum() }, new[] { w }, retain_graph: true, create_graph: true)[0];
        return (grad.square().sum(1).mean() * (gamma / 2)).MoveToOuterDisposeScope();
    }

    /// <summary>The generator side's L_adv = −log σ(D_W(M(z))), batch mean (gradients reach M and E_attr).</summary>
    public static Tensor Generator(DW dw, Tensor fakeW)
    {
        using var scope = NewDisposeScope();
        return F.softplus(-dw.call(fakeW)).mean().MoveToOuterDisposeScope();
    }

    /// <summary>Fraction of real codes D_W calls real (logit &gt; 0) and of fake codes it calls fake: its accuracy per side.</summary>
    public static (double Real, double Fake) Accuracy(DW dw, Tensor realW, Tensor fakeW)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var real = dw.call(realW).gt(0).to_type(ScalarType.Float32).mean().item<float>();
        var fake = dw.call(fakeW).le(0).to_type(ScalarType.Float32).mean().item<float>();
        return (real, fake);
    }
}
