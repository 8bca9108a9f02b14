"""kopf handlers (importing this package registers them). A plain list of imports, one per module."""

from clm_operator.handlers import jobs as jobs
from clm_operator.handlers import model as model
from clm_operator.handlers import model_version as model_version
from clm_operator.handlers import retention as retention
from clm_operator.handlers import training_job as training_job
from clm_operator.handlers import webhook as webhook
