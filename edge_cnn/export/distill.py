"""Knowledge distillation for the fine-tune of a channel-pruned model: the unpruned model is the teacher.

Hinton et al. 2015, "Distilling the Knowledge in a Neural Network": the student learns the teacher's
output distribution softened by a temperature T as well as the labels; the soft term is scaled by T^2
so its gradients keep their size whatever T. TAO retrains pruned models with a teacher for the same
reason: a thinner network recovers more from the unpruned network's outputs (on every augmented
image, including the ambiguous ones) than from hard 0/1 labels on a few thousand images.

Both models must output class probabilities or logits alike (``probabilities``); probabilities are
turned back into logits with ``log`` (softmax is shift-invariant, so log p / T softens exactly as
logits / T do).
"""

from __future__ import annotations

from edge_cnn.keras import keras, tf

TEMPERATURE = 4.0
SOFT_WEIGHT = 0.5  # the share of the loss given to the teacher's soft targets; the labels get the rest


def _logits(outputs, probabilities: bool):
    return tf.math.log(tf.clip_by_value(outputs, 1e-7, 1.0)) if probabilities else outputs


class Distillation(keras.Model):
    """Trains ``student`` (whose weights it updates in place) on (1 - ``soft_weight``) x the compiled loss of
    the labels + ``soft_weight`` x T^2 x KL(teacher_T || student_T). Evaluation (``evaluate``, the
    validation loss a fine-tune keeps its best epoch by) is the student's compiled loss on the labels
    alone. The teacher is never trained."""

    def __init__(self, student, teacher, probabilities: bool, temperature: float = TEMPERATURE,
                 soft_weight: float = SOFT_WEIGHT):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.probabilities = bool(probabilities)
        self.temperature, self.soft_weight = float(temperature), float(soft_weight)

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def soft_loss(self, teacher_outputs, student_outputs):
        """T^2 x KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
        t = self.temperature
        target = tf.nn.softmax(_logits(teacher_outputs, self.probabilities) / t)
        log_student = tf.nn.log_softmax(_logits(student_outputs, self.probabilities) / t)
        kl = tf.reduce_sum(target * (tf.math.log(tf.clip_by_value(target, 1e-12, 1.0)) - log_student), axis=-1)
        return t * t * tf.reduce_mean(kl)

    def train_step(self, data):
        x, y = data
        teacher_outputs = self.teacher(x, training=False)
        with tf.GradientTape() as tape:
            outputs = self.student(x, training=True)
            hard = self.compiled_loss(y, outputs, regularization_losses=self.student.losses)
            loss = (1.0 - self.soft_weight) * hard + self.soft_weight * self.soft_loss(teacher_outputs, outputs)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.compiled_metrics.update_state(y, outputs)
        return {"loss": loss, **{metric.name: metric.result() for metric in self.metrics if metric.name != "loss"}}
