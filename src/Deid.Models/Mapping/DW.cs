using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Deid.Models.Mapping;

/// <summary>
/// D_W: the adversarial discriminator on W codes that keeps M's output on StyleGAN2's W
/// distribution. 512 → 256 → 128 → 64 → 1 with LeakyReLU(0.2) between layers; the output is a raw
/// logit (the non-saturating loss applies softplus). Keys: <c>layers.{0..3}.weight/bias</c>.
/// </summary>
public sealed class DW : Module<Tensor, Tensor>
{
    public static readonly IReadOnlyList<long> ReferenceWidths = new long[] { 256, 128, 64, 1 };

    private readonly ModuleList<Linear> layers;
    private readonly double _negativeSlope;

    public long InputDim { get; }

    public DW(long inputDim = 512, IReadOnlyList<long>? widths = null, double negativeSlope = 0.2) : base(nameof(DW))
    {
        widths ??= ReferenceWidths;
        if (inputDim <= 0 || widths.Count == 0 || widths.Any(w => w <= 0) || widths[^1] != 1)
            throw new ArgumentException("D_W dimensions must be positive and its last layer must have width 1");
        InputDim = inputDim;
        _negativeSlope = negativeSlope;
        layers = LeakyMlp.Build(inputDim, widths);
        RegisterComponents();
    }

    /// <summary><c>[B,InputDim]</c> → logits <c>[B,1]</c>.</summary>
    public override Tensor forward(Tensor w)
    {
        if (w.dim() != 2 || w.shape[1] != InputDim)
            throw new ArgumentException($"D_W expects [B,{InputDim}], got [{string.Join(",", w.shape)}]");
        return LeakyMlp.Run(layers, w, _negativeSlope);
    }
}
