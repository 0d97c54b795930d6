using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deid.Training;

/// <summary>
/// Dynamic loss scaling for fp16 (the rule of torch.cuda.amp.GradScaler, with its defaults): the loss is multiplied by
/// <see cref="Scale"/> before backward; the gradients are divided by it before the step; a step whose gradients
/// overflowed is skipped and the scale halved; after <see cref="GrowthInterval"/> good steps it doubles. Its state is
/// part of a checkpoint, so a resume continues with the same scale.
/// </summary>
public sealed class LossScaler
{
    public const double InitialScale = 65536;
    public const int GrowthInterval = 2000;

    public sealed record Snapshot(double Scale, int GoodSteps, long SkippedSteps);

    public double Scale { get; private set; } = InitialScale;
    private int _goodSteps;
    public long SkippedSteps { get; private set; }

    public Snapshot State
    {
        get => new(Scale, _goodSteps, SkippedSteps);
        set => (Scale, _goodSteps, SkippedSteps) = (value.Scale, value.GoodSteps, value.SkippedSteps);
    }

    /// <summary>Unscales the gradients in place; false (gradients zeroed, scale halved) when any is not finite.</summary>
    public bool Unscale(IEnumerable<Parameter> parameters)
    {
        var grads = parameters.Select(p => p.grad).OfType<Tensor>().ToList();
        bool finite;
        using (var scope = NewDisposeScope())
            finite = grads.All(g => g.isfinite().all().item<bool>());
        if (!finite)
        {
            foreach (var g in grads) g.zero_();
            Scale /= 2;
            _goodSteps = 0;
            SkippedSteps++;
            return false;
        }
        foreach (var g in grads) g.div_(Scale);
        if (++_goodSteps >= GrowthInterval) { Scale *= 2; _goodSteps = 0; }
        return true;
    }
}
