using Deid.Models.Encoders;
using Deid.Models.Mapping;
using Deid.Models.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Deid.Models;

/// <summary>
/// The trained E_attr and M that the PyTorch port of the paper (danielroich/ID-disentanglement-Pytorch) publishes as
/// <c>attr_encoder_*.pt</c> and <c>maper_*.pt</c>. They are whole pickled modules, read inertly
/// (<see cref="PickledModule"/>), mapped onto our networks by the port's layout and written in the
/// <see cref="LatentWeights"/> format with the port's input convention.
/// </summary>
public static partial class ModelImport
{
    public const string PortAttrEncoder = "port-attr-encoder";
    public const string PortMapper = "port-mapper";
    public const string PortRepository = "danielroich/ID-disentanglement-Pytorch";

    private const string PortInceptionClass = "Models.Encoders.Inception.Inception";
    private const string PortMapperClass = "Models.LatentMapper.LatentMapper";
    private const string SequentialClass = "torch.nn.modules.container.Sequential";

    public static bool IsPortKind(string kind) => kind is PortAttrEncoder or PortMapper;

    /// <summary>The <see cref="ModelStore.Catalogue"/> model an import kind fills.</summary>
    public static string CatalogueName(string kind) => kind switch
    {
        PortAttrEncoder => "attr-encoder",
        PortMapper => "mapper",
        _ => kind,
    };

    private static ImportResult ImportPort(object? root, string ptPath, string kind, string outPath, string sha)
    {
        try
        {
            var top = PickledModule.From(root);
            var meta = new Dictionary<string, string>
            {
                ["source"] = Path.GetFileName(ptPath),
                ["source_sha256"] = sha,
                ["source_class"] = top.Type.FullName,
                ["source_repository"] = PortRepository,
            };
            var notes = new List<string>();
            long elements = kind == PortAttrEncoder ? PortAttr(top, outPath, meta, notes) : PortM(top, outPath, meta, notes);
            using var written = SafeTensors.Open(outPath);
            return new ImportResult(kind, outPath, written.Keys.Count, elements, sha, written.Metadata, notes);
        }
        catch (WeightsException e) when (!e.Message.Contains(ptPath, StringComparison.Ordinal))
        {
            throw new WeightsException($"{ptPath}: {e.Message}", e);   // as PyTorchCheckpoint.Load names the file
        }
    }

    /// <summary>
    /// The port's wrappers keep their network in one <c>nn.Sequential</c> attribute, <c>model</c>. Its Inference
    /// notebook wraps a loaded E_attr once more (<c>Inception(loaded)</c> is a Sequential over the loaded wrapper's
    /// children), so single-Sequential nesting is unwrapped too; key prefixes then read <c>model.0.N.…</c>.
    /// </summary>
    private static PickledModule PortSequential(PickledModule top, string wrapperClass)
    {
        if (top.Type.FullName != wrapperClass && top.Type.FullName != SequentialClass)
            throw new WeightsException($"it holds a {top.Type.FullName}, not the port's {wrapperClass} (or its nn.Sequential)");
        var m = top;
        while (m.Type.FullName != SequentialClass || m.Children is [{ Type.FullName: SequentialClass }])
        {
            if (m.Children is not [{ Type.FullName: SequentialClass } only])
                throw new WeightsException($"{m.Type.FullName} should hold exactly one nn.Sequential (the port's `model`), it holds "
                                           + string.Join(", ", m.Children.Select(c => $"{c.Name}: {c.Type.Name}")));
            m = only;
        }
        return m;
    }

    /// <summary>
    /// E_attr: the port's <c>Inception</c> wrapper runs <c>nn.Sequential(*list(inception_v3(aux_logits=False).children())[:-1])</c>:
    /// torchvision's Inception3 children in registration order minus fc. AuxLogits is not among them (torchvision
    /// sets it to None for aux_logits=False, and children() skips None), max-pools, avgpool and dropout are. Since
    /// Inception3.forward never runs, neither does transform_input; the wrapper's forward resizes to 299
    /// (Resize + CenterCrop) and multiplies RGB in [0,1] by 255: <see cref="InceptionInputNormalization.Zero255"/>.
    /// </summary>
    private static long PortAttr(PickledModule top, string outPath, Dictionary<string, string> meta, List<string> notes)
    {
        if (top.Type.FullName == PortInceptionClass)
        {
            // The wrapper whose forward is `model(preprocess(x) * 255)` keeps that pipeline as `preprocess`. An earlier
            // wrapper had none and its callers normalised with ImageNet mean/std instead, so such a file's convention
            // cannot be told from the file itself.
            if (!top.Has("preprocess"))
                throw new WeightsException($"this {PortInceptionClass} has no `preprocess` attribute: it predates the port's x255 input convention (its inputs were ImageNet-normalised elsewhere), so Deid cannot tell how its weights expect their input");
        }
        else notes.Add("a bare nn.Sequential, not the port's Inception wrapper: its input convention (RGB [0,1] x 255 at 299) is assumed");
        var seq = PortSequential(top, PortInceptionClass);
        if (seq.Attribute("training") is true)
            notes.Add("saved in training mode; it runs in eval mode (BatchNorm running statistics, no dropout), as the port's Inference notebook does");
        using var net = new InceptionV3(numClasses: 0, auxLogits: false);
        // Our children in declaration order are torchvision's registration order; with no AuxLogits and no fc they are
        // exactly the port's Sequential, position for position.
        var ours = net.named_children().ToList();
        var theirs = seq.Children;
        for (int i = 0; i < Math.Max(ours.Count, theirs.Count); i++)
        {
            var want = i < ours.Count ? ours[i].module.GetType().Name : null;
            var got = i < theirs.Count ? theirs[i].Type.Name : null;
            if (want == got) continue;
            var where = i < theirs.Count ? $"{theirs[i].Path} is a {got}" : $"it ends after {theirs.Count} children";
            var belongs = want is null ? "where torchvision's order has ended (fc is dropped by the port)" : $"where {want} ({ours[i].name}) belongs";
            var hint = got == "InceptionAux"
                ? " (AuxLogits as a child would feed its logits to Mixed_7a: not a runnable E_attr)"
                : want == "MaxPool2d" && theirs.All(c => c.Type.Name != "MaxPool2d")
                    ? " (torchvision before 0.8 pooled inside forward(), so a Sequential of its children skips the pooling: not the function Deid's InceptionV3 computes)"
                    : "";
            throw new WeightsException($"the port's E_attr should be torchvision Inception3's children minus fc ({ours.Count}), in order; {where} {belongs}{hint}");
        }
        foreach (var c in theirs)
        {
            // The pools carry no weights but shape the function; torchvision fixes them, checked so a changed one is not silently ignored.
            if (c.Type.Name == "MaxPool2d" && (c.Number("kernel_size"), c.Number("stride"), c.Number("padding"), c.Number("dilation"), c.Number("ceil_mode")) != (3, 2, 0, 1, 0))
                throw new WeightsException($"{c.Path} is not torchvision's MaxPool2d(kernel_size=3, stride=2)");
            if (c.Type.Name == "AdaptiveAvgPool2d" && c.Number("output_size") != 1)
                throw new WeightsException($"{c.Path} is not torchvision's AdaptiveAvgPool2d((1, 1))");
        }

        var sd = new Dictionary<string, Tensor>();
        var sourceOf = new Dictionary<string, string>();
        for (int i = 0; i < ours.Count; i++)
        {
            sourceOf[ours[i].name] = theirs[i].Path;
            foreach (var (k, t) in theirs[i].StateDict()) sd[ours[i].name + "." + k] = t;
        }
        string Source(string name)
        {
            int dot = name.IndexOf('.');
            return dot > 0 && sourceOf.TryGetValue(name[..dot], out var p) ? p + name[dot..] : name;
        }
        var ordered = Ordered(net, sd, PortAttrEncoder, allowMissingBn: true, Source);
        int missingBn = ordered.Count(kv => kv.Value is null);
        if (missingBn > 0) notes.Add($"{missingBn} BatchNorm num_batches_tracked counters absent; they are unused at inference");
        StateDict.LoadStrict(net, sd);

        meta["source_layout"] = $"{seq.Path}.N: torchvision Inception3 children minus fc, mapped by position ({theirs[0].Path} -> {ours[0].name} ... {theirs[^1].Path} -> {ours[^1].name})";
        meta["input_convention"] = "RGB in [0,1] times 255, bilinear resize to 299; no transform_input, no mean/std (the port's Inception wrapper)";
        LatentWeights.SaveAttrEncoder(outPath, net, InceptionInputNormalization.Zero255, meta);
        return PyTorchOrder.StateDict(net).Values.Sum(t => t.numel());
    }

    /// <summary>
    /// M: the port's <c>LatentMapper</c> is <c>nn.Sequential(Linear 2560→2048, LeakyReLU(0.2), Linear →1024, LeakyReLU,
    /// Linear →512, LeakyReLU, Linear →512)</c>; its Linear modules sit at indices 0, 2, 4, 6 (our <c>layers.0..3</c>)
    /// and the slope is read from the LeakyReLU modules.
    /// </summary>
    private static long PortM(PickledModule top, string outPath, Dictionary<string, string> meta, List<string> notes)
    {
        var seq = PortSequential(top, PortMapperClass);
        var theirs = seq.Children;
        var linears = new List<PickledModule>();
        double? slope = null;
        for (int i = 0; i < theirs.Count; i++)
        {
            var c = theirs[i];
            if (i % 2 == 0 && c.Type.Name == "Linear") linears.Add(c);
            else if (i % 2 == 1 && c.Type.Name == "LeakyReLU")
            {
                double s = c.Number("negative_slope");
                if (slope is { } s0 && s0 != s) throw new WeightsException($"{c.Path} has LeakyReLU slope {s}, an earlier one {s0}; Deid's M uses one slope");
                slope = s;
            }
            else throw new WeightsException($"the port's M alternates Linear and LeakyReLU; {c.Path} is a {c.Type.Name}");
        }
        if (theirs.Count % 2 == 0) throw new WeightsException($"the port's M ends in a Linear layer; {seq.Path} ends in a {theirs.LastOrDefault()?.Type.Name ?? "nothing"}");
        if (linears.Count != M.ReferenceWidths.Count)
            throw new WeightsException($"{seq.Path} has {linears.Count} Linear layers; the port's M has {M.ReferenceWidths.Count} (2560 -> {string.Join(" -> ", M.ReferenceWidths)})");

        // The port concatenates [id, attr] in that order before M (torch.cat((id_vec, attr_vec), dim=1) in its training
        // and inference code), as M.Map does, so the first layer's input columns are taken as they are.
        using var m = new M(2560, M.ReferenceWidths, slope ?? 0.2);
        var sd = new Dictionary<string, Tensor>();
        for (int j = 0; j < linears.Count; j++)
            foreach (var (k, t) in linears[j].StateDict()) sd[$"layers.{j}.{k}"] = t;
        string Source(string name)
        {
            var parts = name.Split('.', 3);   // layers.J.rest
            return parts.Length == 3 && int.TryParse(parts[1], out int j) && j < linears.Count ? $"{linears[j].Path}.{parts[2]}" : name;
        }
        Ordered(m, sd, PortMapper, allowMissingBn: false, Source);
        StateDict.LoadStrict(m, sd);

        meta["source_layout"] = $"{string.Join(", ", linears.Select(l => l.Path))} -> layers.0..{linears.Count - 1}; LeakyReLU slope {slope ?? 0.2}";
        meta["input_convention"] = "concat(E_id code 512, E_attr code 2048) in that order, as the port concatenates them";
        LatentWeights.SaveMapper(outPath, m, meta);
        return PyTorchOrder.StateDict(m).Values.Sum(t => t.numel());
    }
}
