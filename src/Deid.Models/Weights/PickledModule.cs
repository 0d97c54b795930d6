using System.Globalization;
using static TorchSharp.torch;

namespace Deid.Models.Weights;

/// <summary>
/// A <c>torch.nn.Module</c> from a whole pickled module (<c>torch.save(model)</c>), read inertly: its class and the
/// instance dict the pickle restored. torch keeps a module's parameters, buffers and children in the OrderedDicts
/// <c>_parameters</c>, <c>_buffers</c> and <c>_modules</c> of that dict, so its weights are read without the class ever
/// running. The tensors belong to the checkpoint graph (<see cref="PyTorchCheckpoint.DisposeTensors"/>).
/// </summary>
public sealed class PickledModule
{
    private readonly PyDict _attributes;

    private PickledModule(PyGlobal type, PyDict attributes, string path)
    {
        Type = type;
        _attributes = attributes;
        Path = path;
    }

    /// <summary>The module's Python class, e.g. <c>torch.nn.modules.linear.Linear</c>.</summary>
    public PyGlobal Type { get; }

    /// <summary>Where the module sits below the root, as state-dict keys spell it (<c>model.3</c>; empty for the root).</summary>
    public string Path { get; }

    /// <summary>The root module of a checkpoint graph; a one-line error if the checkpoint holds something else.</summary>
    public static PickledModule From(object? root) =>
        TryFrom(root, "") ?? throw new WeightsException(
            $"the checkpoint holds a {PyTorchCheckpoint.Describe(root)}, not a whole pickled torch.nn.Module (torch.save(model))");

    private static PickledModule? TryFrom(object? o, string path) =>
        o is PyObject { State: PyDict d } po && d.TryGetValue("_modules", out var m) && m is PyDict
        && d.TryGetValue("_parameters", out var p) && p is PyDict
            ? new PickledModule(po.Type, d, path)
            : null;

    /// <summary>Child modules in registration order (the order <c>nn.Sequential</c> runs them); None entries are skipped, as torch does.</summary>
    public IReadOnlyList<PickledModule> Children
    {
        get
        {
            var list = new List<PickledModule>();
            foreach (var (k, v) in Dict("_modules"))
            {
                if (v is null) continue;
                var name = (string)k;
                list.Add(TryFrom(v, Path.Length == 0 ? name : Path + "." + name)
                         ?? throw new WeightsException($"module '{Path}' has a child '{name}' that is a {PyTorchCheckpoint.Describe(v)}, not a module"));
            }
            return list;
        }
    }

    /// <summary>The child's name within its parent (the last part of <see cref="Path"/>).</summary>
    public string Name => Path[(Path.LastIndexOf('.') + 1)..];

    public bool Has(string attribute) => _attributes.ContainsKey(attribute);

    public object? Attribute(string name) => _attributes.TryGetValue(name, out var v) ? v : null;

    /// <summary>A numeric hyper-parameter (int, float, or a tuple/list whose entries are all equal, like <c>kernel_size=(3, 3)</c>).</summary>
    public double Number(string name)
    {
        var v = Attribute(name);
        return v switch
        {
            long l => l,
            double d => d,
            bool b => b ? 1 : 0,
            object?[] t when t.Length > 0 && t.Distinct().Count() == 1 => Convert.ToDouble(t[0], CultureInfo.InvariantCulture),
            List<object?> l when l.Count > 0 && l.Distinct().Count() == 1 => Convert.ToDouble(l[0], CultureInfo.InvariantCulture),
            _ => throw new WeightsException($"module '{Path}' ({Type.Name}) has no numeric '{name}' (found {PyTorchCheckpoint.Describe(v)})"),
        };
    }

    /// <summary>
    /// What <c>state_dict()</c> would return, keys relative to this module, in torch's order: own parameters, own
    /// persistent buffers, then each child's. None parameters and buffers are absent, as in torch.
    /// </summary>
    public Dictionary<string, Tensor> StateDict()
    {
        var result = new Dictionary<string, Tensor>();
        Collect("", result);
        return result;
    }

    private void Collect(string prefix, Dictionary<string, Tensor> into)
    {
        var nonPersistent = Attribute("_non_persistent_buffers_set") as HashSet<object?> ?? [];
        foreach (var (k, v) in Dict("_parameters"))
            if (v is Tensor t) into[prefix + (string)k] = t;
            else if (v is not null) throw new WeightsException($"parameter '{prefix}{k}' of module '{Path}' is a {PyTorchCheckpoint.Describe(v)}, not a tensor");
        foreach (var (k, v) in Dict("_buffers"))
            if (v is Tensor t && !nonPersistent.Contains(k)) into[prefix + (string)k] = t;
        foreach (var c in Children)
            c.Collect(prefix + c.Name + ".", into);
    }

    private PyDict Dict(string name) => Attribute(name) as PyDict ?? new PyDict();
}
