using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Deid.Models.Mapping;

/// <summary>
/// The mapper M: concat(identity code, attribute code) → W code. Four fully connected layers with
/// LeakyReLU(0.2) between them (none after the last, so w can take any sign as StyleGAN2's W does).
/// Reference widths 2560 → 2048 → 1024 → 512 → 512. State-dict keys: <c>layers.{0..3}.weight</c>,
/// <c>layers.{0..3}.bias</c> (only the linear layers are modules; activations are functional).
/// </summary>
public sealed class M : Module<Tensor, Tensor>
{
    public static readonly IReadOnlyList<long> ReferenceWidths = new long[] { 2048, 1024, 512, 512 };

    private readonly ModuleList<Linear> layers;
    private readonly double _negativeSlope;

    public long InputDim { get; }
    public long OutputDim { get; }
    public IReadOnlyList<long> Widths { get; }
    public double NegativeSlope => _negativeSlope;

    /// <param name="inputDim">dim(E_id) + dim(E_attr), 512 + 2048 for IR-SE50 + InceptionV3.</param>
    /// <param name="widths">Output width of each layer; the last one is the W dimension.</param>
    public M(long inputDim = 2560, IReadOnlyList<long>? widths = null, double negativeSlope = 0.2) : base(nameof(M))
    {
        widths ??= ReferenceWidths;
        if (inputDim <= 0 || widths.Count == 0 || widths.Any(w => w <= 0))
            throw new ArgumentException("mapper dimensions must be positive and at least one layer is needed");
        InputDim = inputDim;
        OutputDim = widths[^1];
        Widths = widths.ToArray();
        _negativeSlope = negativeSlope;
        layers = LeakyMlp.Build(inputDim, widths);
        RegisterComponents();
    }

    /// <summary><c>[B,InputDim]</c> → <c>[B,OutputDim]</c>.</summary>
    public override Tensor forward(Tensor x)
    {
        if (x.dim() != 2 || x.shape[1] != InputDim)
            throw new ArgumentException($"mapper M expects [B,{InputDim}], got [{string.Join(",", x.shape)}]");
        return LeakyMlp.Run(layers, x, _negativeSlope);
    }

    /// <summary>Concatenates identity and attribute codes in the order M was trained on: [id, attr].</summary>
    public Tensor Map(Tensor idCode, Tensor attrCode)
    {
        using var scope = NewDisposeScope();
        return forward(torch.cat(new[] { idCode, attrCode }, 1)).MoveToOuterDisposeScope();
    }
}
