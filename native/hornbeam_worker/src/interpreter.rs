//! Which Python installation the embedded interpreter takes its `sys.prefix`,
//! standard library and site-packages from.
//!
//! By default CPython works it out from the program name `python3`, found
//! on `PATH`: an activated virtualenv's `bin/` comes first there, so its
//! `pyvenv.cfg` is read and its site-packages are used. Erlang names the
//! interpreter explicitly in `HORNBEAM_PYTHON` (the `python` option, or the
//! activated venv's `VIRTUAL_ENV/bin/python`) after checking its version
//! against [`BUILT_VERSION`]; the worker then initialises CPython with that
//! path as its program name, which is how `venv/bin/python3` itself starts.

use std::ffi::CString;
use std::mem::MaybeUninit;

use pyo3::ffi;

/// `MAJOR.MINOR` of the libpython this binary was built against.
pub const BUILT_VERSION: &str = env!("HORNBEAM_PYTHON_VERSION");
/// The interpreter the build used (`PYO3_PYTHON`, else `python3` on PATH).
pub const BUILT_WITH: &str = env!("HORNBEAM_PYTHON_BUILT_WITH");

/// The environment variable naming the interpreter (an absolute path).
pub const ENV: &str = "HORNBEAM_PYTHON";

/// Initialises CPython as the interpreter named by `HORNBEAM_PYTHON` would
/// start, when it is set; otherwise leaves initialisation to pyo3. Must run
/// before `Python::initialize` (which then finds it initialised).
pub fn initialize_from_env() -> Result<(), String> {
    let Some(program) = std::env::var_os(ENV).filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    use std::os::unix::ffi::OsStrExt;
    let program =
        CString::new(program.as_bytes()).map_err(|_| format!("{ENV} contains a NUL byte"))?;
    // SAFETY: the PyConfig is initialised by PyConfig_InitPythonConfig before
    // any use and cleared after Py_InitializeFromConfig copied what it needs;
    // nothing else touches the interpreter yet (single thread, before pyo3).
    unsafe {
        let mut config = MaybeUninit::<ffi::PyConfig>::uninit();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let mut config = config.assume_init();
        // as Py_InitializeEx(0), which pyo3 uses: Erlang owns the signals
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        let status =
            ffi::PyConfig_SetBytesString(&mut config, &mut config.program_name, program.as_ptr());
        if ffi::PyStatus_Exception(status) != 0 {
            ffi::PyConfig_Clear(&mut config);
            return Err(format!("cannot use {ENV}={program:?}"));
        }
        let status = ffi::Py_InitializeFromConfig(&config);
        ffi::PyConfig_Clear(&mut config);
        if ffi::PyStatus_Exception(status) != 0 {
            return Err(format!("cannot start Python as {program:?}"));
        }
        // pyo3 expects the GIL released after initialisation
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

/// What `hornbeam_worker --python-version` prints: the version, then the
/// interpreter of the build.
pub fn describe() -> String {
    format!("{BUILT_VERSION}\n{BUILT_WITH}\n")
}
