using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace Deid.Models.Encoders;

/// <summary>Squeeze-and-excitation gate: global pool → 1x1 (C→C/r) → ReLU → 1x1 → sigmoid → scale.</summary>
public sealed class SEModule : Module<Tensor, Tensor>
{
    private readonly AdaptiveAvgPool2d avg_pool;
    private readonly Conv2d fc1;
    private readonly ReLU relu;
    private readonly Conv2d fc2;
    private readonly Sigmoid sigmoid;

    public SEModule(long channels, long reduction) : base(nameof(SEModule))
    {
        long hidden = Math.Max(1, channels / reduction);
        avg_pool = AdaptiveAvgPool2d(new long[] { 1, 1 });
        fc1 = Conv2d(channels, hidden, 1, bias: false);
        relu = ReLU();
        fc2 = Conv2d(hidden, channels, 1, bias: false);
        sigmoid = Sigmoid();
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var g = sigmoid.call(fc2.call(relu.call(fc1.call(avg_pool.call(x)))));
        return (x * g).MoveToOuterDisposeScope();
    }

    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
        => PyTorchOrder.StateDict(this, destination, prefix);
}

/// <summary>
/// pSp's <c>bottleneck_IR_SE</c>: BN → conv3x3 → PReLU → conv3x3(stride) → BN → SE, plus a shortcut
/// that is strided subsampling (MaxPool2d(1,s)) when the width is kept, else conv1x1(stride)+BN.
/// </summary>
public sealed class BottleneckIRSE : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> shortcut_layer;
    private readonly Sequential res_layer;

    public BottleneckIRSE(long inChannels, long depth, long stride, long seReduction = 16) : base("bottleneck_IR_SE")
    {
        shortcut_layer = inChannels == depth
            ? MaxPool2d(1, stride)
            : Sequential(Conv2d(inChannels, depth, 1, stride, bias: false), BatchNorm2d(depth));
        res_layer = Sequential(
            BatchNorm2d(inChannels),
            Conv2d(inChannels, depth, 3, 1, 1, bias: false),
            PReLU(depth),
            Conv2d(depth, depth, 3, stride, 1, bias: false),
            BatchNorm2d(depth),
            new SEModule(depth, seReduction));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return (res_layer.call(x) + shortcut_layer.call(x)).MoveToOuterDisposeScope();
    }

    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
        => PyTorchOrder.StateDict(this, destination, prefix);
}

/// <summary>
/// E_id: pSp's <c>Backbone(112, 50, mode='ir_se')</c> (ArcFace IR-SE50) with identical state_dict
/// keys, shapes and order (397 keys), so <c>model_ir_se50.pth</c> loads by name. Output: 512-d,
/// L2-normalised identity codes.
/// </summary>
public sealed class IrSe50 : Module<Tensor, Tensor>, IIdentityEncoder
{
    // pSp assigns input_layer, output_layer, then body; that is the checkpoint order.
    private readonly Sequential input_layer;
    private readonly Sequential output_layer;
    private readonly Sequential body;

    public int InputSize { get; }
    public int Dim { get; }

    /// <param name="inputSize">112 or 224 (the spatial size the output head is built for).</param>
    /// <param name="numLayers">50, 100 or 152 (pSp's get_blocks).</param>
    /// <param name="width">Channel multiplier; 1.0 is the published network, smaller values are for tests.</param>
    public IrSe50(int inputSize = 112, int numLayers = 50, double dropRatio = 0.4, bool affine = true, double width = 1.0, int embeddingDim = 512)
        : base(nameof(IrSe50))
    {
        if (inputSize != 112 && inputSize != 224) throw new ArgumentException($"IR-SE input size must be 112 or 224, got {inputSize}");
        int[] counts = numLayers switch
        {
            50 => new[] { 3, 4, 14, 3 },
            100 => new[] { 3, 13, 30, 3 },
            152 => new[] { 3, 8, 36, 3 },
            _ => throw new ArgumentException($"IR-SE depth must be 50, 100 or 152, got {numLayers}"),
        };
        long S(long c) => PyTorchOrder.Scale(c, width);
        InputSize = inputSize;
        Dim = embeddingDim;

        input_layer = CreateInputLayer(S(64));
        long last = S(512);
        long spatial = inputSize / 16;
        output_layer = Sequential(
            BatchNorm2d(last),
            Dropout(dropRatio),
            Flatten(),
            Linear(last * spatial * spatial, embeddingDim),
            BatchNorm1d(embeddingDim, affine: affine));

        var units = new List<Module<Tensor, Tensor>>();
        long[] depths = { S(64), S(128), S(256), S(512) };
        long inCh = S(64);
        for (int stage = 0; stage < 4; stage++)
        {
            for (int i = 0; i < counts[stage]; i++)
            {
                units.Add(new BottleneckIRSE(i == 0 ? inCh : depths[stage], depths[stage], i == 0 ? 2 : 1));
            }
            inCh = depths[stage];
        }
        body = Sequential(units);
        RegisterComponents();
    }

    /// <summary>The stem: conv3x3 (no bias) → BN → PReLU (exposed for block-level parity checks).</summary>
    public static Sequential CreateInputLayer(long channels = 64) =>
        Sequential(Conv2d(3, channels, 3, 1, 1, bias: false), BatchNorm2d(channels), PReLU(channels));

    /// <summary><c>[B,3,InputSize,InputSize]</c> in [-1,1] → <c>[B,Dim]</c> with unit L2 norm.</summary>
    public override Tensor forward(Tensor x)
    {
        if (x.dim() != 4 || x.shape[1] != 3 || x.shape[2] != InputSize || x.shape[3] != InputSize)
            throw new ArgumentException($"IR-SE50 expects [B,3,{InputSize},{InputSize}] input, got [{string.Join(",", x.shape)}]");
        using var scope = NewDisposeScope();
        var y = output_layer.call(body.call(input_layer.call(x)));
        return L2Norm(y).MoveToOuterDisposeScope();
    }

    /// <summary>pSp's l2_norm: x / ‖x‖₂ along dim 1, without an epsilon (a zero vector gives NaN, as there).</summary>
    public static Tensor L2Norm(Tensor x)
    {
        using var scope = NewDisposeScope();
        return (x / x.norm(1, true, 2)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// pSp's ID-loss preprocessing: crop the 256² aligned face to rows 35..222, cols 32..219 (the
    /// tight face region the recogniser was trained on), then adaptive-average-pool to InputSize².
    /// Input and output stay in [-1,1].
    /// </summary>
    public Tensor Preprocess(Tensor alignedCrops256)
    {
        if (alignedCrops256.dim() != 4 || alignedCrops256.shape[1] != 3 || alignedCrops256.shape[2] != 256 || alignedCrops256.shape[3] != 256)
            throw new ArgumentException($"expected aligned crops [B,3,256,256], got [{string.Join(",", alignedCrops256.shape)}]");
        using var scope = NewDisposeScope();
        var face = alignedCrops256.to_type(ScalarType.Float32).slice(2, 35, 223, 1).slice(3, 32, 220, 1);
        return F.adaptive_avg_pool2d(face, new long[] { InputSize, InputSize }).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public Tensor Encode(Tensor alignedCrops256)
    {
        using var scope = NewDisposeScope();
        return forward(Preprocess(alignedCrops256)).MoveToOuterDisposeScope();
    }

    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
        => PyTorchOrder.StateDict(this, destination, prefix);

    private static readonly Lazy<IReadOnlyList<(string Name, long[] Shape)>> s_expectedKeys = new(() =>
    {
        using var net = new IrSe50();
        return PyTorchOrder.KeysAndShapes(net);
    });

    /// <summary>
    /// Keys and shapes of <c>Backbone(112, 50, 'ir_se')</c> for import checks (a pre-0.4.1 checkpoint
    /// may lack the <c>num_batches_tracked</c> entries; loaders should tolerate that).
    /// </summary>
    public static IReadOnlyList<(string Name, long[] Shape)> ExpectedKeys() => s_expectedKeys.Value;
}
